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

/** Simulcast layers a camera is sent in (docs/media.md): the server ranks them by bitrate and a
 *  player asks for `layer=low|medium|high`. Chrome sends only as many as the resolution allows
 *  (three from 1280×720). */
export const SIMULCAST_ENCODINGS: RTCRtpEncodingParameters[] = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
]

export interface PublishOptions {
  /** Ask for a replay (live classes are always recorded). */
  record?: boolean
  /** Send the video in simulcast layers; default: on when the stream has video. */
  simulcast?: boolean
}

/** Publishes `stream` (camera and microphone) into the room: as the main publisher (host,
 *  instructor) or as a guest (a trainee on the stage, an examinee); the server decides. */
export async function publish(room: number, stream: MediaStream, opts: PublishOptions = {}): Promise<MediaSession> {
  const simulcast = opts.simulcast ?? stream.getVideoTracks().length > 0
  const pc = new RTCPeerConnection()
  for (const track of stream.getTracks()) {
    const init: RTCRtpTransceiverInit = { direction: 'sendonly', streams: [stream] }
    if (simulcast && track.kind === 'video') init.sendEncodings = SIMULCAST_ENCODINGS.map((e) => ({ ...e }))
    pc.addTransceiver(track, init)
  }
  try {
    const location = await negotiate(`/whip/${room}${opts.record ? '?record=true' : ''}`, pc)
    return { pc, stop: ender(pc, location) }
  } catch (e) {
    pc.close()
    throw e
  }
}

export type Layer = 'low' | 'medium' | 'high'

export interface PlayOptions {
  /** Whom to play (a user id); default: the main publisher, else the first. */
  publisher?: number
  /** The simulcast layer that fits; default (the server's): high. */
  layer?: Layer
  /** Receive the audio too (default); a wall of small pictures leaves it out. */
  audio?: boolean
}

/** The latest session played into each element: an older one still negotiating leaves it be. */
const owners = new WeakMap<HTMLVideoElement, RTCPeerConnection>()

/** Plays a publisher of the room into `video`. */
export async function play(room: number, video: HTMLVideoElement, opts: PlayOptions = {}): Promise<MediaSession> {
  const pc = new RTCPeerConnection()
  owners.set(video, pc)
  pc.addTransceiver('video', { direction: 'recvonly' })
  if (opts.audio !== false) pc.addTransceiver('audio', { direction: 'recvonly' })
  const stream = new MediaStream()
  pc.addEventListener('track', (ev) => {
    stream.addTrack(ev.track)
    if (owners.get(video) === pc) video.srcObject = stream
  })
  const query = new URLSearchParams()
  if (opts.publisher !== undefined) query.set('publisher', String(opts.publisher))
  if (opts.layer) query.set('layer', opts.layer)
  const qs = query.toString()
  try {
    const location = await negotiate(`/whep/${room}${qs ? `?${qs}` : ''}`, pc)
    return { pc, stop: ender(pc, location) }
  } catch (e) {
    pc.close()
    throw e
  }
}

/** The camera as publishers ask for it: 1280×720 when it can, so simulcast has three layers. */
export function openCamera(audio = true): Promise<MediaStream> {
  return navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    audio,
  })
}

/** Below this width (a phone) the main picture is played at layer medium. */
export const PHONE_MAX_WIDTH = 599

/** A readable reason for a camera or microphone refusal. */
export function deviceError(e: unknown): string {
  const name = e instanceof DOMException ? e.name : ''
  if (name === 'NotAllowedError' || name === 'SecurityError') return t.live.media.deniedDevices
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return t.live.media.noDevices
  if (name === 'NotReadableError') return t.live.media.busyDevices
  if (e instanceof ApiError) return e.message
  return t.live.media.publishFailed
}
