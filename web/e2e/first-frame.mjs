// Benchmark (loadtest/bench-first-frame.sh runs it): a host publishes a fake camera into a room;
// one viewer page then joins by WHEP again and again, each time until its first decoded video
// frame, and leaves. Prints one JSON line: join → first frame and connected → first frame,
// p50 / p99 / max over the joins.
//
//   BASE_URL=... DEMO_PASSWORD=... [JOINS=50] node first-frame.mjs

import { chromium } from 'playwright-core'

const BASE_URL = process.env.BASE_URL || 'http://127.0.0.1:18080'
const PASSWORD = process.env.DEMO_PASSWORD
const JOINS = Number(process.env.JOINS || 50)
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium'

async function login(username) {
  const res = await fetch(`${BASE_URL}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD }),
  })
  if (res.status !== 200) throw new Error(`login ${username}: ${res.status}`)
  return (await res.json()).token
}

async function publish({ room, token }) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 }, audio: true })
  const pc = new RTCPeerConnection()
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly' })
  await pc.setLocalDescription(await pc.createOffer())
  await new Promise((r) => {
    if (pc.iceGatheringState === 'complete') return r()
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r())
    setTimeout(r, 1000)
  })
  const res = await fetch(`/whip/${room}`, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  })
  if (res.status !== 201) throw new Error(`WHIP ${res.status}`)
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() })
  window.__pub = pc
}

async function joinOnce({ room, token }) {
  const t0 = performance.now()
  const pc = new RTCPeerConnection()
  pc.addTransceiver('video', { direction: 'recvonly' })
  pc.addTransceiver('audio', { direction: 'recvonly' })
  await pc.setLocalDescription(await pc.createOffer())
  await new Promise((r) => {
    if (pc.iceGatheringState === 'complete') return r()
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r())
    setTimeout(r, 1000)
  })
  const res = await fetch(`/whep/${room}`, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  })
  if (res.status !== 201) throw new Error(`WHEP ${res.status}`)
  const location = res.headers.get('location')
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() })
  let connectedAt = null
  let frameAt = null
  while (performance.now() - t0 < 10000) {
    if (connectedAt === null && pc.connectionState === 'connected') connectedAt = performance.now()
    const stats = await pc.getStats()
    for (const r of stats.values()) {
      if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 0) frameAt = performance.now()
    }
    if (frameAt !== null) break
    await new Promise((r) => setTimeout(r, 5))
  }
  pc.close()
  await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } })
  if (frameAt === null) return null
  return { join: frameAt - t0, afterConnect: frameAt - (connectedAt ?? frameAt) }
}

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.round((s.length - 1) * p))]
}

const host = await login('trainee01')
const viewer = await login('trainee02')
const classes = await (await fetch(`${BASE_URL}/api/v1/classes`, { headers: { authorization: `Bearer ${host}` } })).json()
const created = await fetch(`${BASE_URL}/api/v1/rooms`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${host}` },
  body: JSON.stringify({ class_id: classes[0].id, kind: 'live_commerce', title: '首帧测试' }),
})
const room = (await created.json()).id
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
})
const hostPage = await (await browser.newContext()).newPage()
const viewerPage = await (await browser.newContext()).newPage()
await hostPage.goto(`${BASE_URL}/healthz`)
await viewerPage.goto(`${BASE_URL}/healthz`)
await hostPage.evaluate(publish, { room, token: host })
await viewerPage.waitForTimeout(2000)
const joins = []
let failed = 0
for (let i = 0; i < JOINS; i++) {
  const r = await viewerPage.evaluate(joinOnce, { room, token: viewer })
  if (r) joins.push(r)
  else failed++
  // Spread the joins over time, as viewers arrive (and past the 1 s keyframe-request gate).
  await viewerPage.waitForTimeout(300)
}
await browser.close()
const join = joins.map((j) => j.join)
const after = joins.map((j) => j.afterConnect)
console.log(
  JSON.stringify({
    benchmark: 'first-frame',
    joins: joins.length,
    failed,
    join_to_first_frame_ms: { p50: q(join, 0.5), p99: q(join, 0.99), max: Math.max(...join) },
    connected_to_first_frame_ms: { p50: q(after, 0.5), p99: q(after, 0.99), max: Math.max(...after) },
  }),
)
