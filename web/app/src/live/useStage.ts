// The stage of a live class (连麦上台, docs/media.md): the class's instructors (and the room's
// host) invite trainees; an invited trainee accepts (camera on, published as a guest with
// simulcast), declines, or steps down later; an instructor takes anyone off, and the server then
// ends that trainee's session. The hub keeps who is invited (`state.stage`) and who publishes
// (`state.publishers`); this turns them into tiles and actions. Refusals are the room's toasts.
import { computed, onBeforeUnmount, ref, shallowRef, watch, type ComputedRef, type Ref } from 'vue'
import type { RoomMedia, UserRef } from '../api/protocol'
import { api, errorMessage, isApiError, type ClassTrainee, type RoomView } from '../api'
import { stageApi } from '../api/stage'
import type { LiveRoom } from './hub'
import { PHONE_MAX_WIDTH, type Layer } from './media'
import { useCameraPublish, type CameraPublish } from './useCameraPublish'
import { t } from '../i18n'

/** Whether the window is phone-width (below 600 px), kept current. */
export function usePhoneWidth(): Ref<boolean> {
  const mq = window.matchMedia(`(max-width: ${PHONE_MAX_WIDTH}px)`)
  const narrow = ref(mq.matches)
  const onChange = (e: MediaQueryListEvent) => (narrow.value = e.matches)
  mq.addEventListener('change', onChange)
  onBeforeUnmount(() => mq.removeEventListener('change', onChange))
  return narrow
}

export interface RoomNames {
  /** The class's trainees, once loaded (for the stage picker, and the names of examinees). */
  trainees: Ref<ClassTrainee[] | null>
  loadError: Ref<string | null>
  loadTrainees: (again?: boolean) => Promise<void>
  /** A person's name from what the page knows (the stage, who is present, the chat, the class). */
  name: (id: number) => string | null
}

/** The names of a room's people: publishers carry only user ids. */
export function useRoomNames(live: LiveRoom, room: () => RoomView | null): RoomNames {
  const trainees = shallowRef<ClassTrainee[] | null>(null)
  const loadError = ref<string | null>(null)
  let loading: Promise<void> | null = null
  let loadedFor: number | string = 0

  function loadTrainees(again = false): Promise<void> {
    const cls = room()?.class.id
    if (!cls) return Promise.resolve()
    if (loading && !again) return loading
    if (trainees.value && loadedFor === cls && !again) return Promise.resolve()
    loadError.value = null
    loading = api
      .classDetail(cls)
      .then((detail) => {
        trainees.value = detail.trainees
        loadedFor = cls
      })
      .catch((e: unknown) => {
        loadError.value = `${t.live.stage.loadFailed}：${errorMessage(e)}`
      })
      .finally(() => (loading = null))
    return loading
  }

  const known = computed(() => {
    const map = new Map<number, string>()
    for (const tr of trainees.value ?? []) map.set(Number(tr.id), tr.name)
    for (const m of live.state.chat) map.set(m.user.id, m.user.name)
    for (const u of live.state.members ?? []) map.set(u.id, u.name)
    for (const u of live.state.stage) map.set(u.id, u.name)
    if (live.state.host) map.set(live.state.host.id, live.state.host.name)
    return map
  })
  return { trainees, loadError, loadTrainees, name: (id) => known.value.get(id) ?? null }
}

/** One small picture on the stage row. */
export interface StageTile {
  id: number
  name: string
  /** What they publish; null while an invited trainee has not come up yet. */
  media: RoomMedia | null
  /** My own camera (shown from the local preview, not played back). */
  self: boolean
}

export interface Stage {
  /** The room is a live class (it has a stage). */
  isClass: ComputedRef<boolean>
  /** I may invite and take off (the class's instructors, the room's host). */
  manages: ComputedRef<boolean>
  /** I am invited (on the stage, or asked to come up). */
  invited: ComputedRef<boolean>
  /** Show 「讲师邀请你上台」: invited, camera not on yet. */
  prompt: ComputedRef<boolean>
  /** My camera on the stage. */
  camera: CameraPublish
  tiles: ComputedRef<StageTile[]>
  count: ComputedRef<number>
  max: ComputedRef<number | null>
  full: ComputedRef<boolean>
  /** Who is invited (on the stage or asked up). */
  invitedIds: ComputedRef<Set<number>>
  /** Who is in the room now, when the room says so (small rooms); null otherwise. */
  present: ComputedRef<Set<number> | null>
  /** The layer guests' small pictures are played at. */
  tileLayer: ComputedRef<Layer>
  names: RoomNames
  /** Users with a request in flight (invite or take off). */
  pending: Ref<Set<number>>
  invite: (user: UserRef) => Promise<boolean>
  takeOff: (user: UserRef) => Promise<void>
  accept: () => Promise<void>
  decline: () => Promise<void>
  stepDown: () => Promise<void>
}

export function useStage(live: LiveRoom, roomId: () => number, room: () => RoomView | null): Stage {
  const s = live.state
  const phone = usePhoneWidth()
  const names = useRoomNames(live, room)
  const camera = useCameraPublish(live, roomId)
  const meId = computed(() => live.me.value?.id ?? 0)

  const isClass = computed(() => room()?.kind === 'live_class')
  const manages = computed(() => isClass.value && (s.role === 'host' || s.role === 'instructor'))
  const invited = computed(() => isClass.value && meId.value > 0 && s.stage.some((u) => u.id === meId.value))
  /** Why I am leaving the stage myself (so the change is not announced as the instructor's). */
  const leaving = ref<'declined' | 'stepped_down' | null>(null)
  const prompt = computed(() => invited.value && !camera.stream.value && !camera.busy.value && leaving.value === null)
  const pending = ref(new Set<number>())

  const tiles = computed<StageTile[]>(() => {
    if (!isClass.value) return []
    const me = meId.value
    const list: StageTile[] = []
    const shown = new Set<number>()
    const selfTile = (): StageTile => ({ id: me, name: t.live.stage.me, media: null, self: true })
    for (const m of s.publishers) {
      if (m.role !== 'guest' || shown.has(m.publisher)) continue
      if (m.publisher === me) {
        if (!camera.stream.value) continue
        list.push(selfTile())
      } else {
        list.push({ id: m.publisher, name: names.name(m.publisher) ?? t.live.stage.someone(m.publisher), media: m, self: false })
      }
      shown.add(m.publisher)
    }
    for (const u of s.stage) {
      if (shown.has(u.id)) continue
      if (u.id === me) {
        if (camera.stream.value) list.push(selfTile())
      } else if (manages.value) {
        // Whom the instructor waits for.
        list.push({ id: u.id, name: u.name, media: null, self: false })
      }
      shown.add(u.id)
    }
    return list
  })

  const count = computed(() => s.stage.length)
  const max = computed(() => s.stageMax)
  const full = computed(() => s.stageMax !== null && s.stage.length >= s.stageMax)
  const tileLayer = computed<Layer>(() => (phone.value ? 'low' : 'medium'))
  const invitedIds = computed(() => new Set(s.stage.map((u) => u.id)))
  const present = computed(() => (s.members ? new Set(s.members.map((u) => u.id)) : null))

  // Off the stage: by an instructor (camera off, 「你已下台」), or by myself.
  watch(invited, (now, before) => {
    if (!before || now) return
    const why = leaving.value
    leaving.value = null
    if (why) return
    if (camera.stream.value || camera.busy.value) {
      void camera.stop()
      live.toast(t.live.stage.youLeft, 'info')
    } else {
      live.toast(t.live.stage.cancelled, 'info')
    }
  })

  function mark(user: number, on: boolean) {
    const next = new Set(pending.value)
    if (on) next.add(user)
    else next.delete(user)
    pending.value = next
  }

  async function invite(user: UserRef): Promise<boolean> {
    mark(user.id, true)
    try {
      await stageApi.invite(roomId(), user.id)
      live.toast(t.live.stage.invitedToast(user.name), 'info')
      return true
    } catch (e) {
      live.toast(errorMessage(e))
      return false
    } finally {
      mark(user.id, false)
    }
  }

  async function takeOff(user: UserRef): Promise<void> {
    mark(user.id, true)
    try {
      await stageApi.end(roomId(), user.id)
      live.toast(t.live.stage.takenOffToast(user.name), 'info')
    } catch (e) {
      live.toast(errorMessage(e))
    } finally {
      mark(user.id, false)
    }
  }

  async function accept(): Promise<void> {
    leaving.value = null
    await camera.start()
  }

  /** DELETE of myself; a 404 means I was already off. */
  async function leave(why: 'declined' | 'stepped_down'): Promise<boolean> {
    leaving.value = why
    try {
      await stageApi.end(roomId(), meId.value)
      return true
    } catch (e) {
      if (isApiError(e) && e.status === 404) return true
      leaving.value = null
      live.toast(errorMessage(e))
      return false
    } finally {
      // Already off the stage when the answer came after the event (or instead of it).
      if (!invited.value) leaving.value = null
    }
  }

  async function decline(): Promise<void> {
    if (await leave('declined')) live.toast(t.live.stage.declined, 'info')
  }

  async function stepDown(): Promise<void> {
    leaving.value = 'stepped_down'
    await camera.stop()
    if (await leave('stepped_down')) live.toast(t.live.stage.youLeft, 'info')
  }

  return {
    isClass,
    manages,
    invited,
    prompt,
    camera,
    tiles,
    count,
    max,
    full,
    invitedIds,
    present,
    tileLayer,
    names,
    pending,
    invite,
    takeOff,
    accept,
    decline,
    stepDown,
  }
}
