// End-to-end check of the livecamp web app in headless Chromium (playwright-core,
// no downloaded browsers). For every demo account, at PC and phone size: log in,
// see real data on the role's home page, screenshot it, open the profile, log out.
// Also: a wrong password keeps the login page with an error, and a second login
// of the same account ends the first session.
//
//   DEMO_PASSWORD=... [BASE_URL=http://127.0.0.1:18080] [SCREENSHOT_DIR=...] [CHROMIUM=/usr/bin/chromium] node login-roles.mjs
//
// Prints "N passed, N failed" last; exits non-zero on any failure.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = path.dirname(fileURLToPath(import.meta.url))
const BASE_URL = (process.env.BASE_URL || 'http://127.0.0.1:18080').replace(/\/+$/, '')
const DEMO_PASSWORD = process.env.DEMO_PASSWORD
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR
  ? path.resolve(process.env.SCREENSHOT_DIR)
  : path.resolve(here, '../../target/screenshots')
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'
const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS || 15000)

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

const VIEWPORTS = {
  pc: { viewport: { width: 1366, height: 768 } },
  phone: {
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    userAgent:
      'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36',
  },
}

const MASKED_ID = /\d{4}\*{10}[\dX]{4}/

/** Demo accounts and what their home page must show. */
const ACCOUNTS = [
  {
    role: 'trainee',
    username: 'trainee01',
    home: 'page-trainee-home',
    async check(page) {
      const cards = page.getByTestId('class-card')
      await cards.first().waitFor()
      const text = await cards.first().innerText()
      // The card names the trainee's class as the API reports it.
      const classes = await page.evaluate(async () => (await fetch('/api/v1/classes')).json())
      assert.ok(Array.isArray(classes) && classes.length >= 1, 'trainee01 should be in a class')
      assert.ok(text.includes(classes[0].name), `class card should name "${classes[0].name}", got: ${text}`)
      assert.match(text, /示范/, `class card should name the institution, got: ${text}`)
      assert.match(text, /30\s*名学员/, `class card should show 30 trainees, got: ${text}`)
      const instructors = page.getByTestId('my-instructors').locator('li')
      await instructors.first().waitFor()
      assert.ok((await instructors.count()) >= 1, 'trainee should see at least one instructor')
    },
  },
  {
    role: 'instructor',
    username: 'instructor01',
    home: 'page-instructor-home',
    async check(page) {
      const cards = page.getByTestId('class-card')
      await cards.first().waitFor()
      assert.ok((await cards.count()) >= 1, 'instructor should see at least one class')
    },
  },
  {
    role: 'institution',
    username: 'institution01',
    home: 'page-institution-home',
    async check(page) {
      const name = await page.getByTestId('institution-name').innerText()
      assert.match(name, /示范/, `institution name, got: ${name}`)
      const items = page.getByTestId('instructor-item')
      await items.first().waitFor()
      assert.ok((await items.count()) >= 1, 'institution should list its instructors')
    },
  },
  {
    role: 'supervisor',
    username: 'supervisor01',
    home: 'page-supervisor-home',
    async check(page) {
      const rows = page.getByTestId('institution-table').locator('tbody tr')
      await rows.first().waitFor()
      const text = await page.getByTestId('institution-table').innerText()
      assert.ok(/示范培训学校|示范职业培训学校/.test(text) || (await rows.count()) >= 1, `institution table: ${text}`)
      const region = await page.getByTestId('region-summary').innerText()
      assert.match(region, /长春市/, `region summary, got: ${region}`)
    },
  },
  {
    role: 'admin',
    username: 'admin',
    home: 'page-admin',
    async check(page) {
      const rows = page.getByTestId('account-row')
      await rows.first().waitFor()
      assert.ok((await rows.count()) >= 1, 'accounts table should have rows')
    },
  },
]

// ---------------------------------------------------------------- tiny runner
const tests = []
const test = (name, fn) => tests.push({ name, fn })

// ---------------------------------------------------------------- helpers
let browser

async function newContext(kind) {
  const ctx = await browser.newContext({
    ...VIEWPORTS[kind],
    baseURL: BASE_URL,
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
  })
  ctx.setDefaultTimeout(TIMEOUT)
  return ctx
}

/** A page that records uncaught script errors; `assertClean` fails on any. */
async function newPage(ctx) {
  const page = await ctx.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(String(e)))
  page.assertClean = () => assert.deepEqual(errors, [], `uncaught errors in the page: ${errors.join('; ')}`)
  return page
}

async function login(page, username, password) {
  await page.goto('/login')
  await page.getByTestId('page-login').waitFor()
  await page.getByTestId('login-username').fill(username)
  await page.getByTestId('login-password').fill(password)
  await page.getByTestId('login-submit').click()
}

async function logout(page) {
  await page.getByTestId('user-menu').click()
  await page.getByTestId('logout').click()
  await page.getByTestId('page-login').waitFor()
}

async function shot(page, name) {
  await page.evaluate(() => document.fonts?.ready)
  await page.screenshot({
    path: path.join(SCREENSHOT_DIR, name),
    fullPage: true,
    animations: 'disabled',
    // A full-page capture keeps fixed bars where the first screen ends; put the
    // phone tab bar at the end of the page instead so it hides no content.
    style: '[data-testid="tabbar"] { position: static !important; }',
  })
}

/** Status and error code of the session probe, fetched from inside the page. */
async function probeMe(page) {
  return page.evaluate(async () => {
    const r = await fetch('/api/v1/me', { credentials: 'same-origin' })
    let code = null
    try {
      code = (await r.json()).code ?? null
    } catch {
      // no body
    }
    return { status: r.status, code }
  })
}

// ---------------------------------------------------------------- tests
for (const kind of ['pc', 'phone']) {
  for (const acct of ACCOUNTS) {
    test(`${acct.role} (${acct.username}) at ${kind}: login, home data, profile, logout`, async () => {
      const ctx = await newContext(kind)
      try {
        const page = await newPage(ctx)
        await login(page, acct.username, DEMO_PASSWORD)
        await page.getByTestId(acct.home).waitFor()
        await page.waitForURL((u) => !u.pathname.startsWith('/login'))
        await acct.check(page)
        // The shell's controls exist at every size.
        await page.getByTestId('user-menu').waitFor()
        await page.getByTestId('role-switcher').waitFor()
        await page.waitForLoadState('networkidle')
        await shot(page, `${acct.role}-${kind}.png`)

        await page.goto('/profile')
        await page.getByTestId('page-profile').waitFor()
        const username = await page.getByTestId('profile-username').innerText()
        assert.equal(username.trim(), acct.username)
        if (acct.username === 'trainee01') {
          const idText = await page.getByTestId('profile-id-number').innerText()
          assert.match(idText, MASKED_ID, `masked ID number on the profile, got: ${idText}`)
          await page.getByText(MASKED_ID).first().waitFor({ state: 'visible' })
          await shot(page, `${acct.role}-profile-${kind}.png`)
        }

        await logout(page)
        assert.equal(new URL(page.url()).pathname, '/login')
        const after = await probeMe(page)
        assert.equal(after.status, 401, 'the session must be gone after logout')
        page.assertClean()
      } finally {
        await ctx.close()
      }
    })
  }
}

test('wrong password shows an error and stays on the login page', async () => {
  const ctx = await newContext('pc')
  try {
    const page = await newPage(ctx)
    await login(page, 'trainee30', `${DEMO_PASSWORD}-wrong`)
    const err = page.getByTestId('login-error')
    await err.waitFor()
    const text = (await err.innerText()).trim()
    assert.ok(text.length > 0, 'error message should not be empty')
    assert.equal(new URL(page.url()).pathname, '/login')
    assert.ok(await page.getByTestId('page-login').isVisible())
    assert.equal(await page.getByTestId('login-password').inputValue(), '', 'password field is cleared')
    await shot(page, 'login-error-pc.png')
    page.assertClean()
  } finally {
    await ctx.close()
  }
})

test('a second login of the same account ends the first session', async () => {
  const first = await newContext('pc')
  const second = await newContext('phone')
  try {
    const a = await newPage(first)
    await login(a, 'trainee01', DEMO_PASSWORD)
    await a.getByTestId('page-trainee-home').waitFor()

    const b = await newPage(second)
    await login(b, 'trainee01', DEMO_PASSWORD)
    await b.getByTestId('page-trainee-home').waitFor()

    // The first browser's next API call (opening the profile in the app) fails…
    const failed = a.waitForResponse((r) => r.url().includes('/api/v1/') && r.status() === 401)
    await a.getByTestId('user-menu').click()
    await a.getByTestId('menu-profile').click()
    const res = await failed
    const body = await res.json().catch(() => ({}))
    assert.equal(body.code, 'session_ended', `401 code, got: ${JSON.stringify(body)}`)
    // …and the app sends it back to the login page, remembering where it was.
    await a.getByTestId('page-login').waitFor()
    const url = new URL(a.url())
    assert.equal(url.pathname, '/login')
    assert.equal(url.searchParams.get('next'), '/profile')
    await a.getByTestId('login-notice').waitFor()

    // The second browser is still signed in.
    assert.equal((await probeMe(b)).status, 200)
    a.assertClean()
    b.assertClean()
  } finally {
    await first.close()
    await second.close()
  }
})

// ---------------------------------------------------------------- main
async function main() {
  if (!DEMO_PASSWORD) {
    console.error('DEMO_PASSWORD is required (the password of the demo accounts).')
    console.log('0 passed, 1 failed')
    process.exit(2)
  }
  if (!fs.existsSync(CHROMIUM)) {
    console.error(`Chromium not found at ${CHROMIUM} (set CHROMIUM, or apt-get install chromium).`)
    console.log('0 passed, 1 failed')
    process.exit(2)
  }
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true })

  // launch() gives every run a fresh temporary profile (user-data-dir) that
  // Playwright deletes on close; contexts inside it are isolated like incognito.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  })

  console.log(`# ${BASE_URL} · ${CHROMIUM} ${browser.version()} · screenshots in ${SCREENSHOT_DIR}`)
  let passed = 0
  let failed = 0
  for (const { name, fn } of tests) {
    const t0 = Date.now()
    try {
      await fn()
      passed++
      console.log(`ok - ${name} (${Date.now() - t0} ms)`)
    } catch (e) {
      failed++
      console.log(`not ok - ${name} (${Date.now() - t0} ms)`)
      console.log(
        String(e?.stack || e)
          .split('\n')
          .slice(0, 8)
          .map((l) => `    ${l}`)
          .join('\n'),
      )
    }
  }
  await browser.close()
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed ? 1 : 0)
}

main().catch(async (e) => {
  console.error(e)
  await browser?.close().catch(() => {})
  console.log('0 passed, 1 failed')
  process.exit(1)
})
