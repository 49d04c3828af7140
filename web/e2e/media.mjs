// Browser media test: in headless Chromium with a fake camera and microphone, a trainee host
// publishes into a live room over WHIP and a classmate plays it over WHEP; the player must
// report decoded video frames (getStats framesDecoded > 0) within a second of connecting.
// Bad input gets its 4xx: a malformed offer, an offer without media, a wrong token, a classmate
// publishing into someone else's room, playing a room nobody publishes to. OBS's way in, a
// room's stream key, publishes by WHIP too, and the room page's 「OBS 推流」 dialog makes one.
//
//   DEMO_PASSWORD=... [BASE_URL=http://127.0.0.1:18080] [CHROMIUM=/usr/bin/chromium] node media.mjs

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { chromium } from 'playwright-core'

const BASE_URL = process.env.BASE_URL || 'http://127.0.0.1:18080'
const DEMO_PASSWORD = process.env.DEMO_PASSWORD
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
]

async function api(path, { token, method = 'GET', body } = {}) {
  const res = await fetch(BASE_URL + path, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  return { status: res.status, json: text ? JSON.parse(text) : null }
}

async function login(username) {
  const { status, json } = await api('/api/v1/auth/login', {
    method: 'POST',
    body: { username, password: DEMO_PASSWORD },
  })
  if (status !== 200) throw new Error(`login ${username}: ${status} ${JSON.stringify(json)}`)
  return json.token
}

function assert(cond, message) {
  if (!cond) throw new Error(message)
}

// Runs in the page: publishes the fake camera and microphone by WHIP.
async function publish({ room, token, query = '' }) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 640, height: 360, frameRate: 30 },
    audio: true,
  })
  const pc = new RTCPeerConnection()
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' })
  await pc.setLocalDescription(await pc.createOffer())
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve()
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve())
    setTimeout(resolve, 2000)
  })
  const res = await fetch(`/whip/${room}${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  })
  if (res.status !== 201) throw new Error(`WHIP ${res.status}: ${await res.text()}`)
  window.__whip = { pc, location: res.headers.get('location') }
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() })
  const t0 = performance.now()
  while (pc.connectionState !== 'connected') {
    if (performance.now() - t0 > 10000) throw new Error(`publisher ${pc.connectionState}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  return { location: window.__whip.location, answerHasGcm: true }
}

// Runs in the page: plays the room by WHEP and waits for the first decoded video frame.
async function play({ room, token }) {
  const pc = new RTCPeerConnection()
  pc.addTransceiver('video', { direction: 'recvonly' })
  pc.addTransceiver('audio', { direction: 'recvonly' })
  await pc.setLocalDescription(await pc.createOffer())
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve()
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve())
    setTimeout(resolve, 2000)
  })
  const res = await fetch(`/whep/${room}`, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  })
  if (res.status !== 201) throw new Error(`WHEP ${res.status}: ${await res.text()}`)
  const location = res.headers.get('location')
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() })
  const t0 = performance.now()
  let connectedAt = null
  let framesDecoded = 0
  let audioPackets = 0
  let srtpCipher = null
  while (performance.now() - t0 < 15000) {
    if (connectedAt === null && pc.connectionState === 'connected') connectedAt = performance.now()
    const stats = await pc.getStats()
    for (const report of stats.values()) {
      if (report.type === 'inbound-rtp' && report.kind === 'video') framesDecoded = report.framesDecoded || 0
      if (report.type === 'inbound-rtp' && report.kind === 'audio') audioPackets = report.packetsReceived || 0
      if (report.type === 'transport' && report.srtpCipher) srtpCipher = report.srtpCipher
    }
    if (framesDecoded > 0 && audioPackets > 0) break
    await new Promise((r) => setTimeout(r, 20))
  }
  const firstFrameMs = performance.now() - t0
  window.__whep = pc
  return {
    location,
    framesDecoded,
    audioPackets,
    srtpCipher,
    firstFrameMs,
    afterConnectMs: connectedAt === null ? null : performance.now() - connectedAt,
    state: pc.connectionState,
  }
}

async function main() {
  if (!DEMO_PASSWORD || !fs.existsSync(CHROMIUM)) {
    console.error('DEMO_PASSWORD and Chromium are required')
    console.log('0 passed, 1 failed')
    process.exit(2)
  }
  const results = []
  const test = async (name, fn) => {
    const t0 = Date.now()
    try {
      await fn()
      results.push(true)
      console.log(`ok - ${name} (${Date.now() - t0} ms)`)
    } catch (e) {
      results.push(false)
      console.log(`not ok - ${name} (${Date.now() - t0} ms)\n    ${String(e?.stack || e).split('\n').slice(0, 6).join('\n    ')}`)
    }
  }

  const host = await login('trainee01')
  const viewer = await login('trainee02')
  const classes = await api('/api/v1/classes', { token: host })
  const created = await api('/api/v1/rooms', {
    token: host,
    method: 'POST',
    body: { class_id: classes.json[0].id, kind: 'live_commerce', title: '媒体测试直播间' },
  })
  assert(created.status === 201, `room: ${created.status} ${JSON.stringify(created.json)}`)
  const room = created.json.id

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS })
  console.log(`# ${BASE_URL} · ${browser.version()} · room ${room}`)
  const hostPage = await (await browser.newContext()).newPage()
  const viewerPage = await (await browser.newContext()).newPage()
  await hostPage.goto(BASE_URL + '/healthz')
  await viewerPage.goto(BASE_URL + '/healthz')

  const sdp = async (path, { token, body, type = 'application/sdp' }) => {
    const res = await fetch(BASE_URL + path, {
      method: 'POST',
      headers: { 'content-type': type, ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body,
    })
    const text = await res.text()
    return { status: res.status, json: text.startsWith('{') ? JSON.parse(text) : text }
  }

  await test('playing before anyone publishes: 409 not_publishing', async () => {
    const r = await sdp(`/whep/${room}`, { token: viewer, body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n' })
    assert(r.status === 409 && r.json.code === 'not_publishing', JSON.stringify(r))
  })

  await test('bad offers and callers get clear 4xx', async () => {
    let r = await sdp(`/whip/${room}`, { token: host, body: 'v=0\r\nthis is not sdp' })
    assert(r.status === 400 && r.json.code === 'invalid_sdp', `malformed: ${JSON.stringify(r)}`)
    r = await sdp(`/whip/${room}`, { token: host, body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n' })
    assert(r.status === 400 && r.json.code === 'invalid_sdp', `no media: ${JSON.stringify(r)}`)
    r = await sdp(`/whip/${room}`, { token: 'not-a-token', body: 'v=0\r\n' })
    assert(r.status === 401, `wrong token: ${JSON.stringify(r)}`)
    r = await sdp(`/whip/${room}`, { token: viewer, body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n' })
    assert(r.status === 403 && r.json.code === 'forbidden', `classmate publishing: ${JSON.stringify(r)}`)
    r = await sdp(`/whip/${room}`, { token: host, body: 'v=0\r\n', type: 'text/plain' })
    assert(r.status === 415, `content type: ${JSON.stringify(r)}`)
    r = await sdp(`/whip/999999`, { token: host, body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n' })
    assert(r.status === 404, `unknown room: ${JSON.stringify(r)}`)
    const stats = await api('/api/v1/media/stats', { token: await login('admin') })
    assert(stats.status === 200 && stats.json.publishers === 0 && stats.json.subscribers === 0, `left behind: ${JSON.stringify(stats.json)}`)
  })

  let published
  await test('the host publishes camera and microphone by WHIP', async () => {
    published = await hostPage.evaluate(publish, { room, token: host })
    assert(published.location.startsWith(`/whip/${room}/`), JSON.stringify(published))
  })

  await test('a classmate plays by WHEP and decodes video within 1 s of connecting', async () => {
    const r = await viewerPage.evaluate(play, { room, token: viewer })
    console.log(`    first frame ${r.firstFrameMs.toFixed(0)} ms after the offer, ${r.afterConnectMs?.toFixed(0)} ms after connecting; SRTP ${r.srtpCipher}`)
    assert(r.framesDecoded > 0, `no frames decoded: ${JSON.stringify(r)}`)
    assert(r.audioPackets > 0, `no audio: ${JSON.stringify(r)}`)
    assert(r.afterConnectMs !== null && r.afterConnectMs < 1000, `first frame too late: ${JSON.stringify(r)}`)
    if (r.srtpCipher) assert(/GCM/i.test(r.srtpCipher), `SRTP cipher ${r.srtpCipher}`)
  })

  await test('DELETE ends the session; playing then answers 409', async () => {
    const res = await fetch(BASE_URL + published.location, { method: 'DELETE', headers: { authorization: `Bearer ${host}` } })
    assert(res.status === 200, `DELETE ${res.status}`)
    const again = await fetch(BASE_URL + published.location, { method: 'DELETE', headers: { authorization: `Bearer ${host}` } })
    assert(again.status === 404, `second DELETE ${again.status}`)
    const r = await sdp(`/whep/${room}`, { token: viewer, body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n' })
    assert(r.status === 409, JSON.stringify(r))
    const stats = await api('/api/v1/media/stats', { token: await login('admin') })
    assert(stats.json.publishers === 0 && stats.json.subscribers === 0, `left behind: ${JSON.stringify(stats.json)}`)
  })

  await test('OBS stream key: publishes by WHIP like OBS, a classmate plays it, DELETE with the key ends it', async () => {
    const created = await api(`/api/v1/rooms/${room}/stream-key`, { token: host, method: 'POST' })
    assert(created.status === 201 && created.json.key.startsWith('lcsk_'), `key: ${JSON.stringify(created)}`)
    const key = created.json.bearer_token
    const refused = await api('/api/v1/me', { token: key })
    assert(refused.status === 401, `the key opened the API: ${refused.status}`)
    const session = await hostPage.evaluate(publish, { room, token: key })
    const r = await viewerPage.evaluate(play, { room, token: viewer })
    assert(r.framesDecoded > 0 && r.audioPackets > 0, `playing the key's stream: ${JSON.stringify(r)}`)
    const res = await fetch(BASE_URL + session.location, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } })
    assert(res.status === 200, `DELETE with the key: ${res.status}`)
    const revoked = await api(`/api/v1/rooms/${room}/stream-key`, { token: host, method: 'DELETE' })
    assert(revoked.status === 204, `revoke: ${revoked.status}`)
    const again = await sdp(`/whip/${room}`, { token: key, body: 'v=0\r\n' })
    assert(again.status === 401 && again.json.code === 'invalid_stream_key', `revoked key: ${JSON.stringify(again)}`)
    const stats = await api('/api/v1/media/stats', { token: await login('admin') })
    assert(stats.json.publishers === 0, `left behind: ${JSON.stringify(stats.json)}`)
  })

  await test('a recorded live becomes a replay: listed, served with ranges, the right duration', async () => {
    const started = Date.now()
    const session = await hostPage.evaluate(publish, { room, token: host, query: '?record=true' })
    await hostPage.waitForTimeout(4000)
    const res = await fetch(BASE_URL + session.location, { method: 'DELETE', headers: { authorization: `Bearer ${host}` } })
    assert(res.status === 200, `DELETE ${res.status}`)
    const recordedMs = Date.now() - started
    let replay = null
    const deadline = Date.now() + 30000
    while (Date.now() < deadline) {
      const list = await api(`/api/v1/rooms/${room}/replays`, { token: viewer })
      assert(list.status === 200, `list ${list.status} ${JSON.stringify(list.json)}`)
      replay = list.json[0]
      if (replay && (replay.status === 'ready' || replay.status === 'failed')) break
      await new Promise((r) => setTimeout(r, 250))
    }
    assert(replay?.status === 'ready', `replay: ${JSON.stringify(replay)}`)
    const packagedIn = (replay.ready_at - replay.ended_at) / 1000
    console.log(`    ${replay.duration_ms} ms recorded (about ${recordedMs} ms published), ${replay.bytes} bytes, packaged ${packagedIn.toFixed(2)} s after the end`)
    assert(Math.abs(replay.duration_ms - 4000) < 1500, `duration ${replay.duration_ms}`)
    const classList = await api(`/api/v1/classes/${replay.class_id}/replays`, { token: viewer })
    assert(classList.status === 200 && classList.json.some((r) => r.id === replay.id), 'listed for the class')
    // Range requests, for seeking in the player.
    const part = await fetch(BASE_URL + replay.url, { headers: { authorization: `Bearer ${viewer}`, range: 'bytes=0-99' } })
    assert(part.status === 206, `range: ${part.status}`)
    assert((await part.arrayBuffer()).byteLength === 100, 'range length')
    assert(part.headers.get('content-type') === 'video/webm', part.headers.get('content-type'))
    const whole = await fetch(BASE_URL + replay.url, { headers: { authorization: `Bearer ${viewer}` } })
    assert(whole.status === 200, `file: ${whole.status}`)
    const file = path.join(os.tmpdir(), `livecamp-replay-${replay.id}.webm`)
    fs.writeFileSync(file, Buffer.from(await whole.arrayBuffer()))
    const probe = JSON.parse(
      execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration:stream=codec_name', '-of', 'json', file]).toString(),
    )
    fs.rmSync(file)
    const codecs = probe.streams.map((x) => x.codec_name).sort()
    const seconds = Number(probe.format.duration)
    console.log(`    ffprobe: ${codecs.join(' + ')}, ${seconds.toFixed(2)} s`)
    assert(JSON.stringify(codecs) === JSON.stringify(['opus', 'vp8']), `codecs ${codecs}`)
    assert(Math.abs(seconds - 4) < 1.5, `ffprobe duration ${seconds}`)
    const missing = await fetch(`${BASE_URL}/api/v1/replays/99999`, { headers: { authorization: `Bearer ${viewer}` } })
    assert(missing.status === 404, `unknown replay: ${missing.status}`)
    const anonymous = await fetch(BASE_URL + replay.url)
    assert(anonymous.status === 401, `no token: ${anonymous.status}`)
  })

  await test('a publisher that vanishes is removed after the ICE timeout, and its players with it', async () => {
    const crashPage = await (await browser.newContext()).newPage()
    await crashPage.goto(BASE_URL + '/healthz')
    await crashPage.evaluate(publish, { room, token: host })
    const r = await viewerPage.evaluate(play, { room, token: viewer })
    assert(r.framesDecoded > 0, 'playing before the crash')
    const admin = await login('admin')
    let stats = await api('/api/v1/media/stats', { token: admin })
    assert(stats.json.publishers === 1 && stats.json.subscribers === 1, JSON.stringify(stats.json))
    // The publisher's renderer dies: no DELETE, no DTLS close, just silence.
    const t0 = Date.now()
    await crashPage.goto('chrome://crash').catch(() => {})
    while (Date.now() - t0 < 30000) {
      stats = await api('/api/v1/media/stats', { token: admin })
      if (stats.json.publishers === 0 && stats.json.subscribers === 0) break
      await new Promise((res) => setTimeout(res, 500))
    }
    console.log(`    removed ${((Date.now() - t0) / 1000).toFixed(1)} s after the publisher vanished`)
    assert(stats.json.publishers === 0 && stats.json.subscribers === 0, `left behind: ${JSON.stringify(stats.json)}`)
  })

  await test('room page: the host turns the camera on, a classmate sees and hears it, the host turns it off', async () => {
    const uiLogin = async (page, username) => {
      await page.goto(BASE_URL + '/login')
      await page.getByTestId('login-username').fill(username)
      await page.getByTestId('login-password').fill(DEMO_PASSWORD)
      await page.getByTestId('login-submit').click()
      await page.waitForURL((url) => !url.pathname.startsWith('/login'))
    }
    const hostCtx = await browser.newContext({ viewport: { width: 1366, height: 768 } })
    const viewerCtx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })
    const hostUi = await hostCtx.newPage()
    const viewerUi = await viewerCtx.newPage()
    await uiLogin(hostUi, 'trainee01')
    await uiLogin(viewerUi, 'trainee02')
    await hostUi.goto(`${BASE_URL}/rooms/${room}`)
    await viewerUi.goto(`${BASE_URL}/rooms/${room}`)
    await hostUi.locator('[data-testid="connection-status"][data-state="open"]').waitFor()
    await viewerUi.locator('[data-testid="connection-status"][data-state="open"]').waitFor()
    await hostUi.getByTestId('camera-toggle').click()
    await hostUi.locator('[data-testid="camera-toggle"][data-publishing="true"]').waitFor({ timeout: 10000 })
    // The hub announces the tracks; the classmate's page starts playing by itself.
    await viewerUi.locator('[data-testid="live-player"][data-state="playing"]').waitFor({ timeout: 10000 })
    await viewerUi.waitForFunction(
      () => {
        const v = document.querySelector('[data-testid="live-player"]')
        return v && v.videoWidth > 0 && v.currentTime > 0 && v.srcObject?.getAudioTracks().length > 0
      },
      null,
      { timeout: 5000 },
    )
    await viewerUi.getByTestId('unmute').click()
    assert(await viewerUi.evaluate(() => !document.querySelector('[data-testid="live-player"]').muted), 'sound stays off')
    fs.mkdirSync(process.env.SCREENSHOT_DIR || '.', { recursive: true })
    await hostUi.screenshot({ path: `${process.env.SCREENSHOT_DIR || '.'}/media-host-pc.png` })
    await viewerUi.screenshot({ path: `${process.env.SCREENSHOT_DIR || '.'}/media-viewer-phone.png` })
    await hostUi.getByTestId('camera-toggle').click()
    await viewerUi.locator('[data-testid="video-text"]').waitFor({ timeout: 10000 })
    // The replay recorded earlier in this room is listed under the stage, playable.
    await viewerUi.locator('[data-testid="replay"][data-status="ready"] video').first().waitFor({ timeout: 10000 })
    await viewerUi.screenshot({ path: `${process.env.SCREENSHOT_DIR || '.'}/media-replays-phone.png`, fullPage: true })
    const stats = await api('/api/v1/media/stats', { token: await login('admin') })
    assert(stats.json.publishers === 0 && stats.json.subscribers === 0, `left behind: ${JSON.stringify(stats.json)}`)
    await hostCtx.close()
    await viewerCtx.close()
  })

  await test('room page: the host opens 「OBS 推流」 at phone width, generates a key once, and revokes it', async () => {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })
    const page = await ctx.newPage()
    await page.goto(BASE_URL + '/login')
    await page.getByTestId('login-username').fill('trainee01')
    await page.getByTestId('login-password').fill(DEMO_PASSWORD)
    await page.getByTestId('login-submit').click()
    await page.waitForURL((url) => !url.pathname.startsWith('/login'))
    await page.goto(`${BASE_URL}/rooms/${room}`)
    await page.getByTestId('obs-open').click()
    const dialog = page.getByTestId('obs-dialog')
    await dialog.waitFor()
    const server = await page.getByTestId('obs-server').inputValue()
    assert(server === `${BASE_URL}/whip/${room}`, `server ${server}`)
    await page.locator('[data-testid="obs-key-state"][data-active="false"]').waitFor()
    await page.getByTestId('obs-create').click()
    const key = await page.getByTestId('obs-key').inputValue()
    assert(/^lcsk_[A-Za-z0-9_-]{43}$/.test(key), `key ${key}`)
    const ok = await sdp(`/whip/${room}`, { token: key, body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n' })
    assert(ok.status === 400 && ok.json.code === 'invalid_sdp', `the page's key: ${JSON.stringify(ok)}`)
    const width = await page.evaluate(() => document.documentElement.scrollWidth)
    assert(width <= 390, `the dialog overflows the phone: ${width}px`)
    await page.screenshot({ path: `${process.env.SCREENSHOT_DIR || '.'}/media-obs-phone.png` })
    await page.getByTestId('obs-revoke').click()
    await page.getByTestId('obs-confirm-yes').click()
    await page.locator('[data-testid="obs-key-state"][data-active="false"]').waitFor()
    assert((await page.getByTestId('obs-key').count()) === 0, 'the key is still shown')
    const gone = await sdp(`/whip/${room}`, { token: key, body: 'v=0\r\n' })
    assert(gone.status === 401, `revoked in the page: ${JSON.stringify(gone)}`)
    await ctx.close()
  })

  await browser.close()
  const passed = results.filter(Boolean).length
  console.log(`${passed} passed, ${results.length - passed} failed`)
  process.exit(passed === results.length ? 0 : 1)
}

main().catch((e) => {
  console.error(e)
  console.log('0 passed, 1 failed')
  process.exit(1)
})
