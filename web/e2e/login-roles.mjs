// End-to-end check of the livecamp web app in headless Chromium (playwright-core,
// no downloaded browsers). For every demo account, at PC and phone size: log in,
// see real data on the role's home page, screenshot it, open the profile, log out.
// Also: a wrong password keeps the login page with an error, a second login of the
// same account ends the first session, a live room works end to end between two
// browsers (host on PC, viewer on a phone), and the admin edits the sensitive words.
//
//   DEMO_PASSWORD=... [BASE_URL=http://127.0.0.1:18080] [SCREENSHOT_DIR=...] [CHROMIUM=/usr/bin/chromium] node login-roles.mjs
//
// Prints "N passed, N failed" last; exits non-zero on any failure.
import assert from 'node:assert/strict'
import path from 'node:path'

import { BASE_URL, DEMO_PASSWORD, SCREENSHOT_DIR, newContext, newPage, run, test } from './harness.mjs'

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

test('live room: trainee host goes live, a classmate chats and likes, host pins and ends', async () => {
  const hostCtx = await newContext('pc')
  const viewerCtx = await newContext('phone')
  try {
    const stamp = Date.now().toString(36)
    const title = `家乡特产带货专场 ${stamp}`
    const text = `主播好，我想买两箱 ${stamp}`

    // Host (trainee01, PC): create a live-commerce room through the UI and go live.
    const host = await newPage(hostCtx)
    await login(host, 'trainee01', DEMO_PASSWORD)
    await host.getByTestId('page-trainee-home').waitFor()
    await host.getByTestId('nav-rooms').filter({ visible: true }).click()
    await host.getByTestId('page-rooms').waitFor()
    await host.getByTestId('create-room').click()
    await host.getByTestId('create-room-dialog').waitFor()
    const kinds = await host.getByTestId('room-kind').locator('option').allInnerTexts()
    assert.deepEqual(kinds.map((k) => k.trim()), ['带货直播'], 'a trainee may only open live-commerce rooms')
    await host.waitForFunction(() => document.querySelector('[data-testid="room-class"]')?.value)
    await host.getByTestId('room-title').fill(title)
    await host.getByTestId('create-room-submit').click()
    await host.getByTestId('page-live-room').waitFor()
    const roomPath = new URL(host.url()).pathname
    assert.match(roomPath, /^\/rooms\/\d+$/)
    await host.getByTestId('room-name').filter({ hasText: title }).waitFor()
    await host.getByTestId('live-status').filter({ hasText: '未开播' }).waitFor()
    await host.locator('[data-testid="start-live"]:not([disabled])').click()
    await host.getByTestId('live-status').filter({ hasText: '直播中' }).waitFor()
    await host.getByTestId('end-live').waitFor()
    await host.getByTestId('video-area').filter({ hasText: '等待主播开启画面' }).waitFor()

    // Viewer (trainee02, phone): find the room in the list and enter it.
    const viewer = await newPage(viewerCtx)
    await login(viewer, 'trainee02', DEMO_PASSWORD)
    await viewer.getByTestId('page-trainee-home').waitFor()
    await viewer.goto('/rooms')
    await viewer.getByTestId('page-rooms').waitFor()
    assert.equal(await viewer.getByTestId('create-room').count(), 1, 'trainees may create rooms')
    const card = viewer.getByTestId('room-card').filter({ hasText: title })
    await card.waitFor()
    assert.match(await card.innerText(), /直播中/, 'the card shows the room as live')
    // Live rooms come first.
    const firstCard = await viewer.getByTestId('room-card').first().innerText()
    assert.match(firstCard, /直播中/, `the first card should be a live room, got: ${firstCard}`)
    await card.click()
    await viewer.getByTestId('page-live-room').waitFor()
    assert.equal(new URL(viewer.url()).pathname, roomPath)
    await viewer.getByTestId('live-status').filter({ hasText: '直播中' }).waitFor()
    assert.equal(await viewer.getByTestId('start-live').count(), 0, 'viewers have no host controls')
    assert.equal(await viewer.getByTestId('chat-message-menu').count(), 0, 'viewers do not moderate')
    // The host counts one viewer.
    await host.getByTestId('viewer-count').filter({ hasText: /^1$/ }).waitFor()

    // Chat: Enter sends; it shows on both pages.
    const input = viewer.getByTestId('chat-input')
    await viewer.locator('[data-testid="chat-input"]:not([disabled])').waitFor()
    await input.fill(text)
    await input.press('Enter')
    await host.getByTestId('chat-message').filter({ hasText: text }).waitFor()
    await viewer.getByTestId('chat-message').filter({ hasText: text }).waitFor()
    // Cleared when the server acknowledges, which may come just after the event itself.
    for (let i = 0; i < 50 && (await input.inputValue()) !== ''; i++) await viewer.waitForTimeout(100)
    assert.equal(await input.inputValue(), '', 'the input is cleared after sending')

    // Likes: five taps are batched and reach the host.
    for (let i = 0; i < 5; i++) await viewer.getByTestId('like-button').tap()
    await host.getByTestId('like-count').filter({ hasText: /^5$/ }).waitFor()
    await viewer.getByTestId('like-count').filter({ hasText: /^5$/ }).waitFor()

    // The host pins the message; the viewer sees it pinned.
    await host.getByTestId('chat-message').filter({ hasText: text }).getByTestId('chat-message-menu').click()
    await host.getByTestId('mod-pin').click()
    await viewer.getByTestId('pinned-message').filter({ hasText: text }).waitFor()
    await host.getByTestId('pinned-message').filter({ hasText: text }).waitFor()

    await shot(host, 'live-host-pc.png')
    await shot(viewer, 'live-viewer-phone.png')

    // Server errors are shown as sent: chatting too fast…
    for (let i = 1; i <= 4; i++) {
      await viewer.locator('[data-testid="chat-input"]:not([disabled])').fill(`第 ${i} 条 ${stamp}`)
      await input.press('Enter')
      // Answered when the input is cleared (accepted) or an error shows (refused); the message
      // itself can show before the acknowledgement, while the input still refuses a new send.
      await viewer.waitForFunction(
        () =>
          document.querySelector('[data-testid="chat-error"]') ||
          document.querySelector('[data-testid="chat-input"]').value === '',
      )
    }
    await viewer.getByTestId('chat-error').filter({ hasText: '发言太快' }).waitFor()
    // …and being muted (the host mutes from the message's menu, then lifts it).
    await host.getByTestId('chat-message').filter({ hasText: text }).getByTestId('chat-message-menu').click()
    await host.getByTestId('mod-mute-10').click()
    await viewer.locator('[data-testid="chat-input"][disabled]').waitFor()
    assert.match(await input.getAttribute('placeholder'), /禁言/)
    await host.getByTestId('chat-message').filter({ hasText: text }).getByTestId('chat-message-menu').click()
    await host.getByTestId('mod-unmute').click()
    await viewer.locator('[data-testid="chat-input"]:not([disabled])').waitFor()

    // The host ends the live; the viewer sees the ended state.
    await host.getByTestId('end-live').click()
    await host.getByTestId('end-live-confirm').click()
    await viewer.getByTestId('live-status').filter({ hasText: '已结束' }).waitFor()
    await viewer.getByTestId('video-area').filter({ hasText: '直播已结束' }).waitFor()
    await host.getByTestId('live-status').filter({ hasText: '已结束' }).waitFor()
    await host.getByTestId('start-live').waitFor()
    host.assertClean()
    viewer.assertClean()
  } finally {
    await hostCtx.close()
    await viewerCtx.close()
  }
})

test('live room client against a scripted hub: resume, resync, retries, close codes', async () => {
  // The browser's socket is answered by this test (Playwright routeWebSocket), so the client's
  // handling of reconnects and edge cases is checked exactly; REST still goes to the server.
  const ctx = await newContext('pc')
  try {
    const page = await newPage(ctx)
    await login(page, 'trainee13', DEMO_PASSWORD)
    await page.getByTestId('page-trainee-home').waitFor()
    const rooms = await page.evaluate(async () => (await fetch('/api/v1/rooms')).json())
    assert.ok(rooms.length > 0, 'needs a room of the class (the live room test creates one)')
    const room = rooms[0].id
    const me = { id: 990001, name: '脚本用户' }
    const host = { id: 990002, name: '脚本主播' }
    const msg = (id, text, user = host, role = 'host') => ({ id, user, role, text, at: Date.now() })
    const chat = (seq, text) => ({ type: 'event', room, seq, at: Date.now(), event: { kind: 'chat', message: msg(seq, text) } })
    const snap = (seq, recent, extra = {}) => ({
      live: true, seq, viewers: 3, peak: 4, likes: 10, host, pinned: null, recent_chat: recent, members: null, ...extra,
    })

    const sockets = []
    const frames = []
    const waiters = []
    const next = (conn, type) =>
      new Promise((resolve) => waiters.push({ match: (n, f) => n === conn && f.type === type, resolve }))
    await page.routeWebSocket('**/ws', (ws) => {
      const n = sockets.push(ws)
      ws.send(JSON.stringify({ type: 'welcome', v: 1, user: me, server_time: Date.now() }))
      ws.onMessage((m) => {
        const f = JSON.parse(String(m))
        frames.push(f)
        const i = waiters.findIndex((w) => w.match(n, f))
        if (i >= 0) waiters.splice(i, 1)[0].resolve(f)
      })
    })
    const send = (n, o) => sockets[n - 1].send(JSON.stringify(o))
    const texts = async () => (await page.getByTestId('chat-text').allInnerTexts()).map((x) => x.trim())
    const input = page.getByTestId('chat-input')

    // Fresh join; a removal that overtakes its chat keeps that chat out; old seqs are ignored.
    const join1 = next(1, 'join')
    await page.goto(`/rooms/${room}`)
    assert.equal((await join1).last_seq, undefined)
    send(1, { type: 'joined', room, role: 'viewer', state: snap(100, [msg(99, '快照里的消息')]) })
    await page.locator('[data-testid="chat-input"]:not([disabled])').waitFor()
    send(1, { type: 'event', room, seq: 102, at: 1, event: { kind: 'message_removed', message: 101, by: host } })
    send(1, chat(101, '被删除的消息'))
    send(1, chat(103, '第三条'))
    await page.getByTestId('chat-text').filter({ hasText: '第三条' }).waitFor()
    assert.deepEqual(await texts(), ['快照里的消息', '第三条'])

    // 1001: reconnect and resume from the highest seq; replayed duplicates are dropped.
    const join2 = next(2, 'join')
    sockets[0].close({ code: 1001, reason: 'server shutting down' })
    await page.getByTestId('connection-status').filter({ hasText: '正在重连' }).waitFor()
    assert.equal((await join2).last_seq, 103)
    send(2, { type: 'resumed', room, role: 'viewer', from_seq: 103 })
    send(2, chat(103, '第三条'))
    send(2, chat(104, '第四条'))
    await page.getByTestId('chat-text').filter({ hasText: '第四条' }).waitFor()
    assert.deepEqual(await texts(), ['快照里的消息', '第三条', '第四条'])

    // An action answered `unavailable` shows the message and joins the room again.
    const chatFrame = next(2, 'chat')
    await input.fill('你好')
    await input.press('Enter')
    const rejoin = next(2, 'join')
    send(2, { type: 'error', id: (await chatFrame).id, code: 'unavailable', message: '直播间暂时不可用，请重新进入' })
    assert.equal((await rejoin).last_seq, 104)
    await page.getByTestId('chat-error').filter({ hasText: '暂时不可用' }).waitFor()
    send(2, { type: 'resumed', room, role: 'viewer', from_seq: 104 })

    // 4008: back at once; a join refused as `unavailable` is sent again; `resync` starts over.
    const join4 = next(3, 'join')
    sockets[1].close({ code: 4008, reason: 'too slow: reconnect with last_seq' })
    const retry = next(3, 'join')
    send(3, { type: 'error', id: (await join4).id, code: 'unavailable', message: '直播间正在重新加载，请重新进入' })
    assert.equal((await retry).last_seq, 104)
    send(3, { type: 'resync', room, role: 'viewer', state: snap(5000, [msg(4999, '重新同步后的消息', me, 'viewer')], { likes: 77 }) })
    await page.getByTestId('chat-text').filter({ hasText: '重新同步后的消息' }).waitFor()
    assert.deepEqual(await texts(), ['重新同步后的消息'])
    assert.equal((await page.getByTestId('like-count').innerText()).trim(), '77')

    // Muted by a moderator: the input is closed and says for how long; unmuted: open again.
    send(3, { type: 'event', room, seq: 5001, at: 1, event: { kind: 'user_muted', user: me.id, until: Date.now() + 600_000 } })
    await page.locator('[data-testid="chat-input"][disabled]').waitFor()
    assert.match(await input.getAttribute('placeholder'), /禁言，10 分钟/)
    send(3, { type: 'event', room, seq: 5002, at: 1, event: { kind: 'user_unmuted', user: me.id } })
    await page.locator('[data-testid="chat-input"]:not([disabled])').waitFor()

    // Quick taps are batched: a few `like` frames (at most ~4 a second) carrying every tap.
    const before = frames.length
    for (let i = 0; i < 12; i++) await page.getByTestId('like-button').click({ force: true })
    await page.waitForTimeout(800)
    const likes = frames.slice(before).filter((f) => f.type === 'like')
    assert.equal(likes.reduce((a, f) => a + f.count, 0), 12, JSON.stringify(likes))
    assert.ok(likes.length < 12, `taps should be batched, got ${likes.length} frames`)
    for (const f of likes) send(3, { type: 'ack', id: f.id })
    assert.equal((await page.getByTestId('like-count').innerText()).trim(), '89')

    // 4002: the client is at fault; it stops instead of reconnecting, and says so.
    sockets[2].close({ code: 4002, reason: 'too many invalid messages' })
    await page.getByTestId('live-fatal').waitFor()
    await page.waitForTimeout(2000)
    assert.equal(sockets.length, 3, 'no reconnect after 4002')
    page.assertClean()
  } finally {
    await ctx.close()
  }
})

test('rooms list for a supervisor: no create button; admin edits the sensitive words', async () => {
  const ctx = await newContext('pc')
  try {
    const page = await newPage(ctx)
    await login(page, 'supervisor01', DEMO_PASSWORD)
    await page.getByTestId('page-supervisor-home').waitFor()
    await page.goto('/rooms')
    await page.getByTestId('page-rooms').waitFor()
    await page.getByTestId('room-card').or(page.getByTestId('empty-state')).or(page.getByText('暂无直播间')).first().waitFor()
    assert.equal(await page.getByTestId('create-room').count(), 0, 'supervisors cannot create rooms')
    page.assertClean()
    await logout(page)

    await login(page, 'admin', DEMO_PASSWORD)
    await page.getByTestId('page-admin').waitFor()
    await page.getByTestId('admin-tab-words').click()
    await page.getByTestId('word-add').waitFor()
    const before = await page.getByTestId('word-row').count()
    // An empty word: the server refuses and its message is shown.
    await page.getByTestId('word-add').click()
    await page.getByTestId('words-save').click()
    const err = await page.getByTestId('words-error').innerText()
    assert.match(err, /1–32/, `server validation message, got: ${err}`)
    // A real word saves; removing it again restores the list.
    const word = `违规词${Date.now().toString(36)}`
    await page.getByTestId('word-input').last().fill(word)
    await page.getByTestId('word-action').last().selectOption('block')
    await page.getByTestId('words-save').click()
    await page.getByTestId('words-saved').waitFor()
    assert.equal(await page.getByTestId('word-row').count(), before + 1)
    await shot(page, 'admin-words-pc.png')
    const inputs = await page.getByTestId('word-input').evaluateAll((els) => els.map((e) => e.value))
    const index = inputs.indexOf(word)
    assert.ok(index >= 0, `saved word listed, got: ${inputs.join(',')}`)
    assert.equal(await page.getByTestId('word-action').nth(index).inputValue(), 'block')
    await page.getByTestId('word-remove').nth(index).click()
    await page.getByTestId('words-save').click()
    await page.getByTestId('words-saved').waitFor()
    assert.equal(await page.getByTestId('word-row').count(), before)
    page.assertClean()
  } finally {
    await ctx.close()
  }
})

run()
