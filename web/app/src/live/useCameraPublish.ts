// A guest's camera (a trainee on a live class's stage, an examinee in a proctoring room): the
// local stream for the preview and its WHIP session (simulcast), stopped together. A lost
// connection stops both and says so; the page leaving stops them too.
import { onBeforeUnmount, ref, shallowRef, type Ref, type ShallowRef } from 'vue'
import type { LiveRoom } from './hub'
import { deviceError, openCamera, publish, type MediaSession } from './media'
import { t } from '../i18n'

export interface CameraPublish {
  /** The local camera (for the preview), while on. */
  stream: ShallowRef<MediaStream | null>
  session: ShallowRef<MediaSession | null>
  busy: Ref<boolean>
  /** Opens the camera and publishes it; false (and a toast) when that failed. */
  start: () => Promise<boolean>
  /** Ends the session and turns the camera off. */
  stop: () => Promise<void>
}

export function useCameraPublish(live: LiveRoom, roomId: () => number): CameraPublish {
  const stream = shallowRef<MediaStream | null>(null)
  const session = shallowRef<MediaSession | null>(null)
  const busy = ref(false)
  /** Bumped by every stop: a start still in flight then gives up what it opened. */
  let generation = 0

  function stopTracks(s: MediaStream | null) {
    s?.getTracks().forEach((track) => track.stop())
  }

  async function start(): Promise<boolean> {
    if (busy.value || session.value) return !!session.value
    busy.value = true
    const mine = ++generation
    let opened: MediaStream | null = null
    try {
      opened = await openCamera()
      if (mine !== generation) {
        stopTracks(opened)
        return false
      }
      stream.value = opened
      const s = await publish(roomId(), opened)
      if (mine !== generation) {
        await s.stop()
        return false
      }
      session.value = s
      s.pc.addEventListener('connectionstatechange', () => {
        if (s.pc.connectionState === 'failed' && session.value === s) {
          live.toast(t.live.media.lost)
          void stop()
        }
      })
      return true
    } catch (e) {
      if (mine === generation) {
        stopTracks(opened)
        stream.value = null
        live.toast(deviceError(e))
      }
      return false
    } finally {
      if (mine === generation) busy.value = false
    }
  }

  async function stop(): Promise<void> {
    generation++
    busy.value = false
    const s = session.value
    session.value = null
    stopTracks(stream.value)
    stream.value = null
    await s?.stop()
  }

  onBeforeUnmount(() => void stop())
  return { stream, session, busy, start, stop }
}
