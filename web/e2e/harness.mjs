// What the browser tests share: settings from the environment, headless Debian Chromium, PC and
// phone contexts, pages that record uncaught errors, logging in, screenshots, API calls with the
// page's session, and a tiny runner that prints "N passed, N failed" last and exits non-zero on
// any failure.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = path.dirname(fileURLToPath(import.meta.url))
export const BASE_URL = (process.env.BASE_URL || 'http://127.0.0.1:18080').replace(/\/+$/, '')
export const DEMO_PASSWORD = process.env.DEMO_PASSWORD
export const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR
  ? path.resolve(process.env.SCREENSHOT_DIR)
  : path.resolve(here, '../../target/screenshots')
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'
export const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS || 15000)

// Without the background-networking flags Chromium keeps dialling Google on this closed network.
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

export const VIEWPORTS = {
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

const tests = []
/** Registers a test; `run()` runs them in order. */
export const test = (name, fn) => tests.push({ name, fn })

let browser

/** A fresh isolated context (`pc` or `phone`) on the server, in zh-CN and Shanghai time. */
export async function newContext(kind) {
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
export async function newPage(ctx) {
  const page = await ctx.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(String(e)))
  page.assertClean = () => assert.deepEqual(errors, [], `uncaught errors in the page: ${errors.join('; ')}`)
  return page
}

/** Logs in through the login page and waits until the app has left it. */
export async function login(page, username, password = DEMO_PASSWORD) {
  await page.goto('/login')
  await page.getByTestId('page-login').waitFor()
  await page.getByTestId('login-username').fill(username)
  await page.getByTestId('login-password').fill(password)
  await page.getByTestId('login-submit').click()
  await page.waitForURL((u) => !u.pathname.startsWith('/login'))
}

/** A full-page screenshot, from the top (a scrolled capture repeats the sticky top bar). */
export async function shot(page, name) {
  await page.evaluate(() => document.fonts?.ready)
  await page.evaluate(() => window.scrollTo(0, 0))
  await page.screenshot({
    path: path.join(SCREENSHOT_DIR, name),
    fullPage: true,
    animations: 'disabled',
    // Put the phone tab bar at the end of the page so it hides no content.
    style: '[data-testid="tabbar"] { position: static !important; }',
  })
}

/** The API with the page's session cookie and the CSRF header from the csrf cookie. */
export async function api(page, method, url, body) {
  const cookies = await page.context().cookies(BASE_URL)
  const csrf = cookies.find((c) => c.name === 'livecamp_csrf')?.value
  const res = await page.request.fetch(url, {
    method,
    headers: { Accept: 'application/json', ...(csrf ? { 'X-CSRF-Token': decodeURIComponent(csrf) } : {}) },
    data: body,
  })
  const text = await res.text()
  return { status: res.status(), body: text ? JSON.parse(text) : null }
}

/** Chromium's fake camera and microphone, allowed without asking (`run({ args: FAKE_MEDIA })`). */
export const FAKE_MEDIA = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']

/** Launches Chromium (with `args` added to its flags), runs every registered test, prints the
 *  tally and exits. */
export function run({ args = [] } = {}) {
  main(args).catch(async (e) => {
    console.error(e)
    await browser?.close().catch(() => {})
    console.log('0 passed, 1 failed')
    process.exit(1)
  })
}

async function main(extraArgs) {
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
  // launch() gives every run a fresh temporary profile that Playwright deletes on close;
  // contexts inside it are isolated like incognito.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] })
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
