// Several publishers per room, in headless Chromium with a fake camera (docs/media.md):
//
// - 连麦上台: instructor01 (PC) turns the camera on in a live class (simulcast, 1280×720) and
//   invites trainee02 from 「邀请上台」; trainee02 (phone) gets 「讲师邀请你上台」, accepts and
//   publishes as a guest; trainee03 (PC) sees both pictures decoding (getStats framesDecoded of
//   the main player and of the guest's tile), trainee04 (phone) plays the main picture at layer
//   medium; the server's refusals of bad invitations; the instructor takes trainee02 off with
//   「请下台」: trainee02's camera goes off (「你已下台」) and the tile leaves every page.
// - Simulcast: the instructor's camera played at layer=low and layer=high decodes at different
//   widths (what Chrome sends is printed).
// - 监考: supervisor01 (PC) and instructor02 (phone) watch a proctoring room's wall (empty state
//   first), trainee06 (phone) and trainee07 (PC) turn their cameras on (「监考中」), the wall shows
//   2 tiles decoding at layer low, a trainee playing gets 403, a camera turned off leaves the wall.
//
//   DEMO_PASSWORD=... [BASE_URL=http://127.0.0.1:18080] [SCREENSHOT_DIR=...] [CHROMIUM=/usr/bin/chromium] node stage.mjs
//
// Prints "N passed, N failed" last; exits non-zero on any failure.
import assert from 'node:assert/strict'
import path from 'node:path'

import { BASE_URL, DEMO_PASSWORD, FAKE_MEDIA, SCREENSHOT_DIR, api, login, newContext, newPage, run, shot, test } from './harness.mjs'

/** Every RTCPeerConnection the page makes, for getStats (the app keeps them to itself), and
 *  every WHEP request's address. */
function recordPeerConnections() {
  const Original = window.RTCPeerConnection
  window.__pcs = []
  window.__wheps = []
  const fetch0 = window.fetch
  window.fetch = (input, init) => {
    const url = String(input instanceof Request ? input.url : input)
    if (url.includes('/whep/')) window.__wheps.push(url.replace(location.origin, ''))
    return fetch0(input, init)
  }
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args)
      window.__pcs.push(this)
    }
  }
}

async function openPage(kind, username) {
  const ctx = await newContext(kind)
  await ctx.addInitScript(recordPeerConnections)
  const page = await newPage(ctx)
  await login(page, username)
  return page
}

/** A page of the server's origin without a session (WHEP with a bearer token). */
async function probePage() {
  const page = await (await newContext('pc')).newPage()
  await page.goto('/healthz')
  return page
}

async function enterRoom(page, room) {
  await page.goto(`/rooms/${room}`)
  await page.locator('[data-testid="connection-status"][data-state="open"]').waitFor()
}

/** In the page: the inbound video stats of the picture in `selector` (found through its track). */
async function inboundVideo(page, selector) {
  return page.evaluate(async (sel) => {
    const v = document.querySelector(sel)
    const track = v?.srcObject?.getVideoTracks?.()[0]
    if (!track) return null
    for (const pc of window.__pcs) {
      if (pc.connectionState === 'closed') continue
      for (const r of pc.getReceivers()) {
        if (r.track?.id !== track.id) continue
        for (const x of (await r.getStats()).values()) {
          if (x.type === 'inbound-rtp' && x.kind === 'video') {
            return { framesDecoded: x.framesDecoded ?? 0, frameWidth: x.frameWidth ?? 0, frameHeight: x.frameHeight ?? 0 }
          }
        }
      }
    }
    return null
  }, selector)
}

/** Waits until the picture in `selector` has decoded `frames` frames; returns its stats. */
async function decoding(page, selector, frames = 1, timeout = 15000) {
  const t0 = Date.now()
  let last = null
  while (Date.now() - t0 < timeout) {
    last = await inboundVideo(page, selector)
    if (last && last.framesDecoded >= frames) return last
    await page.waitForTimeout(100)
  }
  throw new Error(`${selector}: no frames decoded within ${timeout} ms (${JSON.stringify(last)})`)
}

/** In the page: what this page sends (outbound video per simulcast layer). */
async function outboundVideo(page) {
  return page.evaluate(async () => {
    const out = []
    for (const pc of window.__pcs) {
      if (pc.connectionState === 'closed') continue
      for (const x of (await pc.getStats()).values()) {
        if (x.type === 'outbound-rtp' && x.kind === 'video') {
          out.push({ rid: x.rid ?? null, width: x.frameWidth ?? 0, height: x.frameHeight ?? 0, bytesSent: x.bytesSent, reason: x.qualityLimitationReason })
        }
      }
    }
    return out.sort((a, b) => a.width - b.width)
  })
}

/** In the page (with a bearer token): plays `room` by WHEP with `query`, waits for `frames`
 *  decoded frames, then ends the session. */
async function whepProbe({ room, token, query, frames }) {
  const pc = new RTCPeerConnection()
  pc.addTransceiver('video', { direction: 'recvonly' })
  pc.addTransceiver('audio', { direction: 'recvonly' })
  await pc.setLocalDescription(await pc.createOffer())
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve()
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve())
    setTimeout(resolve, 1500)
  })
  const res = await fetch(`/whep/${room}${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  })
  const body = await res.text()
  if (res.status !== 201) {
    pc.close()
    return { status: res.status, body }
  }
  const location = res.headers.get('location')
  await pc.setRemoteDescription({ type: 'answer', sdp: body })
  const t0 = performance.now()
  let video = { framesDecoded: 0, frameWidth: 0, frameHeight: 0 }
  while (performance.now() - t0 < 15000) {
    for (const x of (await pc.getStats()).values()) {
      if (x.type === 'inbound-rtp' && x.kind === 'video') {
        video = {
          framesDecoded: x.framesDecoded ?? 0,
          frameWidth: x.frameWidth ?? 0,
          frameHeight: x.frameHeight ?? 0,
          packetsReceived: x.packetsReceived ?? 0,
          pliCount: x.pliCount ?? 0,
        }
      }
    }
    if (video.framesDecoded >= frames) break
    await new Promise((r) => setTimeout(r, 50))
  }
  pc.close()
  await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } })
  return { status: 201, ...video }
}

async function token(username) {
  const res = await fetch(`${BASE_URL}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: DEMO_PASSWORD }),
  })
  assert.equal(res.status, 200, `login ${username}: ${res.status}`)
  return (await res.json()).token
}

const toast = (page, text) => page.getByTestId('toast').filter({ hasText: text })
const meId = async (page) => Number((await api(page, 'GET', '/api/v1/me')).body.id)

// ---------------------------------------------------------------------------------------------
// 连麦上台

let classRoom
let teacher
let guest
let viewer
let guestId
let guestName
let teacherId

test('live class: the instructor turns the camera on (simulcast) and goes live', async () => {
  teacher = await openPage('pc', 'instructor01')
  const classes = await api(teacher, 'GET', '/api/v1/classes')
  const created = await api(teacher, 'POST', '/api/v1/rooms', {
    class_id: classes.body[0].id,
    kind: 'live_class',
    title: '连麦上台测试课',
  })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  classRoom = created.body.id
  teacherId = await meId(teacher)
  console.log(`    live class ${classRoom}`)

  guest = await openPage('phone', 'trainee02')
  viewer = await openPage('pc', 'trainee03')
  guestId = await meId(guest)
  guestName = (await api(guest, 'GET', '/api/v1/me')).body.name
  await enterRoom(teacher, classRoom)
  await enterRoom(guest, classRoom)
  await enterRoom(viewer, classRoom)

  await teacher.getByTestId('camera-toggle').click()
  await teacher.locator('[data-testid="camera-toggle"][data-publishing="true"]').waitFor()
  await teacher.getByTestId('start-live').click()
  await teacher.locator('[data-testid="live-status"]').filter({ hasText: '直播中' }).waitFor()
  assert.equal(await teacher.getByTestId('stage-count').innerText(), '台上 0/4')
})

test('simulcast: the main picture at layer=low and layer=high decodes at different widths', async () => {
  // Chrome adds layers as its bandwidth estimate allows (a loaded machine may hold some back).
  let sent = []
  const t0 = Date.now()
  while (Date.now() - t0 < 30000) {
    sent = await outboundVideo(teacher)
    if (new Set(sent.filter((x) => x.width > 0).map((x) => x.width)).size >= 3) break
    await teacher.waitForTimeout(500)
  }
  console.log(`    Chrome sends ${sent.filter((x) => x.width > 0).length} of ${sent.length} layers after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${sent.map((x) => `${x.rid}=${x.width}×${x.height}${x.reason && x.reason !== 'none' ? ` (${x.reason})` : ''}`).join(', ')}`)
  const probe = await probePage()
  const bearer = await token('trainee05')
  const low = await probe.evaluate(whepProbe, { room: classRoom, token: bearer, query: '?layer=low', frames: 20 })
  const medium = await probe.evaluate(whepProbe, { room: classRoom, token: bearer, query: '?layer=medium', frames: 20 })
  const high = await probe.evaluate(whepProbe, { room: classRoom, token: bearer, query: '?layer=high', frames: 20 })
  console.log(`    decoded: low ${low.frameWidth}×${low.frameHeight}, medium ${medium.frameWidth}×${medium.frameHeight}, high ${high.frameWidth}×${high.frameHeight}`)
  assert.equal(low.status, 201, JSON.stringify(low))
  assert.equal(high.status, 201, JSON.stringify(high))
  assert.ok(low.framesDecoded > 0 && high.framesDecoded > 0, JSON.stringify({ low, high }))
  assert.ok(high.frameWidth > low.frameWidth, `high ${high.frameWidth} vs low ${low.frameWidth}`)
  await probe.context().close()
})

test('the instructor invites a trainee from the picker; bad invitations are refused', async () => {
  // Refusals: a non-trainee invited, a trainee inviting, a trainee publishing uninvited.
  const notTrainee = await api(teacher, 'POST', `/api/v1/rooms/${classRoom}/stage`, { user: teacherId })
  assert.equal(notTrainee.status, 400, JSON.stringify(notTrainee.body))
  assert.equal(notTrainee.body.code, 'validation_failed')
  const byTrainee = await api(viewer, 'POST', `/api/v1/rooms/${classRoom}/stage`, { user: guestId })
  assert.equal(byTrainee.status, 403, JSON.stringify(byTrainee.body))
  const early = await guest.evaluate(async (room) => {
    const csrf = decodeURIComponent(document.cookie.match(/livecamp_csrf=([^;]+)/)?.[1] ?? '')
    const res = await fetch(`/whip/${room}`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', 'x-csrf-token': csrf },
      body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n',
    })
    return { status: res.status, body: await res.json() }
  }, classRoom)
  assert.equal(early.status, 403, `a trainee not on the stage publishing: ${JSON.stringify(early)}`)
  assert.match(early.body.message, /上台/)

  await teacher.getByTestId('stage-invite-open').click()
  const picker = teacher.getByTestId('stage-picker')
  await picker.waitFor()
  const row = picker.locator(`[data-testid="stage-candidate"][data-user="${guestId}"]`)
  await row.getByTestId('stage-invite').click()
  await row.getByText('已邀请').waitFor()
  await toast(teacher, '等待对方确认').waitFor()
  await teacher.screenshot({ path: path.join(SCREENSHOT_DIR, 'stage-picker-pc.png') })
  await picker.getByRole('button', { name: '关闭' }).click()
  // Whom the instructor waits for.
  await teacher.locator(`[data-testid="stage-waiting"][data-user="${guestId}"]`).waitFor()
  assert.equal(await teacher.getByTestId('stage-count').innerText(), '台上 1/4')
})

test('the trainee is asked up, accepts, and publishes as a guest', async () => {
  const prompt = guest.getByTestId('stage-prompt')
  await prompt.getByText('讲师邀请你上台').waitFor()
  await shot(guest, 'stage-prompt-phone.png')
  await prompt.getByTestId('stage-accept').click()
  await guest.getByTestId('stage-self').waitFor()
  await prompt.waitFor({ state: 'detached' })
  // The guest still watches the instructor.
  await guest.locator('[data-testid="live-player"][data-state="playing"]').waitFor()
  await decoding(guest, '[data-testid="live-player"]')
  await teacher.locator(`[data-testid="stage-tile"][data-publisher="${guestId}"][data-state="playing"]`).waitFor()
  await decoding(teacher, `[data-testid="stage-tile"][data-publisher="${guestId}"] video`)
  guest.assertClean()
})

test('another trainee sees the instructor and the guest, both decoding', async () => {
  const t0 = Date.now()
  const main = await decoding(viewer, '[data-testid="live-player"]', 5)
  const tileSel = `[data-testid="stage-tile"][data-publisher="${guestId}"]`
  await viewer.locator(`${tileSel}[data-state="playing"]`).waitFor()
  assert.equal(await viewer.locator(tileSel).getAttribute('data-layer'), 'medium')
  const tile = await decoding(viewer, `${tileSel} video`, 5)
  const wheps = await viewer.evaluate(() => window.__wheps)
  assert.ok(wheps.includes(`/whep/${classRoom}?publisher=${teacherId}&layer=high`), JSON.stringify(wheps))
  assert.ok(wheps.includes(`/whep/${classRoom}?publisher=${guestId}&layer=medium`), JSON.stringify(wheps))
  console.log(`    main ${main.frameWidth}×${main.frameHeight} (high), guest tile ${tile.frameWidth}×${tile.frameHeight} (medium)`)
  assert.equal(await viewer.locator(`${tileSel} .tile-name`).innerText(), guestName)
  assert.equal(await viewer.getByTestId('stage-take-off').count(), 0, 'trainees cannot take anyone off')
  assert.equal(await viewer.getByTestId('stage-invite-open').count(), 0, 'trainees cannot invite')
  const restarts = async (p) => p.locator(tileSel).getAttribute('data-restarts')
  console.log(`    tile restarts: instructor ${await restarts(teacher)}, viewer ${await restarts(viewer)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`)
  await teacher.locator(`${tileSel}[data-state="playing"]`).waitFor()
  await viewer.waitForTimeout(500)
  await shot(viewer, 'stage-viewer-pc.png')
  await shot(teacher, 'stage-instructor-pc.png')
  await shot(guest, 'stage-guest-phone.png')

  // A phone plays the main picture at layer medium and the guest at low.
  const phone = await openPage('phone', 'trainee04')
  await enterRoom(phone, classRoom)
  await phone.locator(`${tileSel}[data-layer="low"][data-state="playing"]`).waitFor()
  const pm = await decoding(phone, '[data-testid="live-player"]', 5)
  const phoneWheps = await phone.evaluate(() => window.__wheps)
  assert.ok(phoneWheps.includes(`/whep/${classRoom}?publisher=${teacherId}&layer=medium`), JSON.stringify(phoneWheps))
  assert.ok(phoneWheps.includes(`/whep/${classRoom}?publisher=${guestId}&layer=low`), JSON.stringify(phoneWheps))
  const pt = await decoding(phone, `${tileSel} video`, 5)
  console.log(`    (${((Date.now() - t0) / 1000).toFixed(1)} s) phone: main ${pm.frameWidth}×${pm.frameHeight} (medium), guest tile ${pt.frameWidth}×${pt.frameHeight} (low)`)
  // The class's other instructor, on a phone, manages the stage too.
  const teacher2 = await openPage('phone', 'instructor02')
  await enterRoom(teacher2, classRoom)
  await teacher2.locator(`${tileSel}[data-state="playing"]`).getByTestId('stage-take-off').waitFor()
  await teacher2.waitForTimeout(500)
  await shot(teacher2, 'stage-instructor-phone.png')
  await teacher2.getByTestId('stage-invite-open').click()
  await teacher2.getByTestId('stage-picker').getByText('已上台').waitFor()
  await teacher2.screenshot({ path: path.join(SCREENSHOT_DIR, 'stage-picker-phone.png') })
  teacher2.assertClean()
  await teacher2.context().close()
  // A guest's picture by WHEP, by publisher.
  const probe = await probePage()
  const byGuest = await probe.evaluate(whepProbe, { room: classRoom, token: await token('trainee05'), query: `?publisher=${guestId}&layer=low`, frames: 5 })
  assert.equal(byGuest.status, 201, JSON.stringify(byGuest))
  assert.ok(byGuest.framesDecoded > 0, `${JSON.stringify(byGuest)}; the guest sends ${JSON.stringify(await outboundVideo(guest))}`)
  await probe.context().close()
  await phone.waitForTimeout(500)
  await shot(phone, 'stage-viewer-phone.png')
  phone.assertClean()
  await phone.context().close()
  viewer.assertClean()
})

test('the instructor takes the trainee off: camera off, 「你已下台」, the tile leaves', async () => {
  const tileSel = `[data-testid="stage-tile"][data-publisher="${guestId}"]`
  await teacher.locator(tileSel).getByTestId('stage-take-off').click()
  await toast(guest, '你已下台').waitFor()
  await guest.getByTestId('stage-self').waitFor({ state: 'detached' })
  assert.equal(await guest.getByTestId('stage-prompt').count(), 0)
  const live = await guest.evaluate(() =>
    window.__pcs.filter((pc) => pc.getSenders().some((s) => s.track && s.track.readyState === 'live')).length,
  )
  assert.equal(live, 0, 'the guest camera is still on')
  await viewer.locator(tileSel).waitFor({ state: 'detached', timeout: 10000 })
  await teacher.locator(tileSel).waitFor({ state: 'detached', timeout: 10000 })
  assert.equal(await teacher.getByTestId('stage-count').innerText(), '台上 0/4')
  // The main picture goes on.
  await decoding(viewer, '[data-testid="live-player"]', 1)

  // Asked again, the trainee declines: off the stage at once.
  const again = await api(teacher, 'POST', `/api/v1/rooms/${classRoom}/stage`, { user: guestId })
  assert.equal(again.status, 200, JSON.stringify(again.body))
  await guest.getByTestId('stage-decline').click()
  await toast(guest, '已婉拒上台邀请').waitFor()
  await teacher.getByText('台上 0/4').waitFor()
  const stage = await api(viewer, 'GET', `/api/v1/rooms/${classRoom}/stage`)
  assert.deepEqual(stage.body, { stage: [], max: 4 })
})

test('the trainee comes up again and steps down by themself', async () => {
  const tileSel = `[data-testid="stage-tile"][data-publisher="${guestId}"]`
  await teacher.getByTestId('stage-invite-open').click()
  await teacher.locator(`[data-testid="stage-candidate"][data-user="${guestId}"]`).getByTestId('stage-invite').click()
  await teacher.getByTestId('stage-picker').getByRole('button', { name: '关闭' }).click()
  await guest.getByTestId('stage-accept').click()
  await viewer.locator(`${tileSel}[data-state="playing"]`).waitFor()
  // The toast of the last time is gone first.
  await guest.waitForFunction(
    () => ![...document.querySelectorAll('[data-testid="toast"]')].some((x) => x.textContent.includes('你已下台')),
  )
  await guest.getByTestId('stage-step-down').click()
  await toast(guest, '你已下台').waitFor()
  await viewer.locator(tileSel).waitFor({ state: 'detached', timeout: 10000 })
  await teacher.getByText('台上 0/4').waitFor()
  assert.equal(await guest.getByTestId('stage-prompt').count(), 0, 'asked again after stepping down')
  await guest.waitForTimeout(300)
  assert.equal(await toast(guest, '你已下台').count(), 1, 'said once')
  for (const p of [teacher, guest, viewer]) p.assertClean()
  await teacher.getByTestId('camera-toggle').click()
  await teacher.getByTestId('end-live').click()
  await teacher.getByTestId('end-live-confirm').click()
  await viewer.locator('[data-testid="live-status"]').filter({ hasText: '已结束' }).waitFor()
  for (const p of [teacher, guest, viewer]) await p.context().close()
})

// ---------------------------------------------------------------------------------------------
// 监考

test('proctoring: two examinees publish, the wall shows both at layer low; a trainee may not play', async () => {
  const teacher2 = await openPage('phone', 'instructor02')
  const classes = await api(teacher2, 'GET', '/api/v1/classes')
  const created = await api(teacher2, 'POST', '/api/v1/rooms', {
    class_id: classes.body[0].id,
    kind: 'proctoring',
    title: '期末考试监考间',
  })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  const room = created.body.id
  console.log(`    proctoring room ${room}`)
  const supervisor = await openPage('pc', 'supervisor01')
  await enterRoom(supervisor, room)
  await enterRoom(teacher2, room)
  await supervisor.getByTestId('proctor-empty').getByText('暂无考生开启摄像头').waitFor()
  assert.equal(await supervisor.getByTestId('proctor-count').innerText(), '在线考生 0')
  await shot(supervisor, 'proctor-empty-pc.png')

  const a = await openPage('phone', 'trainee06')
  const b = await openPage('pc', 'trainee07')
  const ids = [await meId(a), await meId(b)]
  for (const p of [a, b]) {
    await enterRoom(p, room)
    assert.equal(await p.getByTestId('proctor-wall').count(), 0, 'examinees see no wall')
    await p.locator('[data-testid="proctor-self"][data-state="idle"]').waitFor()
    if (p === b) await shot(p, 'proctor-examinee-idle-pc.png')
    await p.getByTestId('proctor-camera').click()
    await p.locator('[data-testid="proctor-self"][data-state="active"]').waitFor()
    await p.getByTestId('proctor-state').getByText('监考中').waitFor()
  }
  await shot(a, 'proctor-examinee-phone.png')

  await supervisor.locator('[data-testid="proctor-count"][data-count="2"]').waitFor()
  for (const id of ids) {
    const sel = `[data-testid="proctor-tile"][data-publisher="${id}"]`
    await supervisor.locator(`${sel}[data-state="playing"][data-layer="low"]`).waitFor()
    const st = await decoding(supervisor, `${sel} video`, 3)
    console.log(`    wall tile ${id}: ${st.frameWidth}×${st.frameHeight} (low)`)
    await decoding(teacher2, `${sel} video`, 1)
  }
  assert.equal(await supervisor.getByTestId('proctor-tile').count(), 2)
  assert.equal(await supervisor.getByTestId('proctor-count').innerText(), '在线考生 2')
  await supervisor.waitForTimeout(500)
  await shot(supervisor, 'proctor-wall-pc.png')
  await shot(teacher2, 'proctor-wall-phone.png')

  // An examinee may not watch the others.
  const bearer = await token('trainee08')
  const probe = await probePage()
  const refused = await probe.evaluate(whepProbe, { room, token: bearer, query: '', frames: 1 })
  assert.equal(refused.status, 403, JSON.stringify(refused))
  console.log(`    trainee playing: ${refused.status} ${refused.body}`)
  await probe.context().close()

  // A camera turned off leaves the wall.
  await b.getByTestId('proctor-camera-stop').click()
  await supervisor.locator(`[data-testid="proctor-tile"][data-publisher="${ids[1]}"]`).waitFor({ state: 'detached', timeout: 10000 })
  assert.equal(await supervisor.getByTestId('proctor-count').innerText(), '在线考生 1')
  for (const p of [supervisor, teacher2, a, b]) p.assertClean()
  for (const p of [supervisor, teacher2, a, b]) await p.context().close()
})

run({ args: FAKE_MEDIA })
