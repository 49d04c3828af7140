// Publishing and playing a room's audio and video with WHIP / WHEP (docs/media.md): the offer
// goes out with every ICE candidate gathered (the server does not trickle), the answer comes
// back with the session's location, DELETE on it ends the session.

import { ApiError, CSRF_HEADER, csrfToken, toApiError } from '../api/client'
import { t } from '../i18n'

export interface MediaSession {
  pc: RTCPeerConnection
  /** Ends the session on the server and closes the connection. */
  stop: () => Promise<void>
}

async function gathered(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === 'complete') return
  await new Promise<void>((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') resolve()
    }
    pc.addEventListener('icegatheringstatechange', done)
    // Host candidates come at once; do not wait for unreachable STUN servers.
    setTimeout(resolve, 1500)
  })
}

async function negotiate(path: string, pc: RTCPeerConnection): Promise<string> {
  await pc.setLocalDescription(await pc.createOffer())
  await gathered(pc)
  const headers: Record<string, string> = { 'Content-Type': 'application/sdp' }
  const token = csrfToken()
  if (token) headers[CSRF_HEADER] = token
  let res: Response
  try {
    res = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers,
      body: pc.localDescription?.sdp ?? '',
    })
  } catch {
    throw new ApiError(0, 'network_error', t.errors.network)
  }
  if (res.status !== 201) throw await toApiError(res)
  const location = res.headers.get('Location') ?? ''
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() })
  return location
}

function ender(pc: RTCPeerConnection, location: string): () => Promise<void> {
  let ended = false
  return async () => {
    if (ended) return
    ended = true
    pc.close()
    if (!location) return
    const headers: Record<string, string> = {}
    const token = csrfToken()
    if (token) headers[CSRF_HEADER] = token
    await fetch(location, { method: 'DELETE', credentials: 'same-origin', headers }).catch(() => {})
  }
}

/** Publishes `stream` (camera and microphone) into the room; `record` asks for a replay (live
 *  classes are always recorded). */
export async function publish(room: number, stream: MediaStream, record = false): Promise<MediaSession> {
  const pc = new RTCPeerConnection()
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] })
  try {
    const location = await negotiate(`/whip/${room}${record ? '?record=true' : ''}`, pc)
    return { pc, stop: ender(pc, location) }
  } catch (e) {
    pc.close()
    throw e
  }
}

/** Plays the room's audio and video into `video`. */
export async function play(room: number, video: HTMLVideoElement): Promise<MediaSession> {
  const pc = new RTCPeerConnection()
  pc.addTransceiver('video', { direction: 'recvonly' })
  pc.addTransceiver('audio', { direction: 'recvonly' })
  const stream = new MediaStream()
  pc.addEventListener('track', (ev) => {
    stream.addTrack(ev.track)
    video.srcObject = stream
  })
  try {
    const location = await negotiate(`/whep/${room}`, pc)
    return { pc, stop: ender(pc, location) }
  } catch (e) {
    pc.close()
    throw e
  }
}

/** A readable reason for a camera or microphone refusal. */
export function deviceError(e: unknown): string {
  const name = e instanceof DOMException ? e.name : ''
  if (name === 'NotAllowedError' || name === 'SecurityError') return t.live.media.deniedDevices
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return t.live.media.noDevices
  if (name === 'NotReadableError') return t.live.media.busyDevices
  if (e instanceof ApiError) return e.message
  return t.live.media.publishFailed
}
