// The live-room hub client: one reconnecting WebSocket to `/ws` (same origin; the session
// cookie authenticates it), typed with the generated protocol (src/api/protocol.ts).
//
// - Requests carry an `id`; `request()` resolves on the matching `ack` and rejects with the
//   server's `error` (its Chinese `message` is meant for the user).
// - Rooms stay registered across reconnects: after a reconnect every room is joined again with
//   the last seq seen, so the server answers `resumed` (+ the missed events) or `resync`.
// - Reconnects back off exponentially with jitter; 4001 (session ended) stops and reports,
//   4002 / 1009 (the client sent bad frames) stop with an error, 4008 (too slow) and 1001
//   (going away) reconnect promptly. A `join` refused as `unavailable` (the room was reloading)
//   is sent again; a `join` without any answer for 10 s counts as a dead connection.
// docs/protocol.md (§8 reconnect, §10 errors, §11 close codes) describes all of this.
// - A ping every 20 s keeps idle connections alive through proxies; no frame for 50 s counts as
//   a dead connection.
//
// The Vue side (reactive room state and actions) is `useLiveRoom` in ./useLiveRoom.ts.
import { computed, onBeforeUnmount, onMounted, reactive, shallowRef, watch, type ComputedRef, type ShallowRef } from 'vue'
import { useRouter } from 'vue-router'
import type {
  ChatMessage,
  ClientFrame,
  CommerceEvent,
  ClientMsg,
  MemberRole,
  RoomMedia,
  RoomSnapshot,
  ServerMsg,
  UserRef,
} from '../api/protocol'
import { api, isApiError } from '../api'
import { stageApi } from '../api/stage'
import { clearSession } from '../session'
import { t } from '../i18n'

export const PROTOCOL_VERSION = 1

/** Application close codes (signaling/src/protocol.rs `close`). */
export const CLOSE = {
  SESSION_ENDED: 4001,
  PROTOCOL_ERROR: 4002,
  TOO_SLOW: 4008,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
} as const

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed'

type EventMsg = Extract<ServerMsg, { type: 'event' }>
type StatsMsg = Extract<ServerMsg, { type: 'stats' }>
/** A client message without the frame envelope (`v`, `id`). */
type Msg = ClientMsg

/** An `error` frame answering one of our requests, or a local failure (not connected, timeout). */
export class HubError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.name = 'HubError'
    this.code = code
  }
}

/** What a room's owner is told. Events arrive deduplicated; see `RoomEntry.seen`. */
export interface RoomListener {
  /** `joined` (fresh) or `resync` (missed too much): replace all state with the snapshot. */
  snapshot(role: MemberRole, state: RoomSnapshot, kind: 'joined' | 'resync'): void
  /** `resumed`: keep the state; the missed events follow. */
  resumed(role: MemberRole): void
  event(msg: EventMsg): void
  stats(msg: StatsMsg): void
  /** The join was refused (no such room, no access…). */
  joinFailed(err: HubError): void
}

interface RoomEntry {
  listener: RoomListener
  /** Highest seq seen: sent as `last_seq` when joining again after a reconnect. */
  lastSeq: number | null
  /** The snapshot's seq: events at or below it are already in the snapshot. */
  floor: number
  /** Recently seen seqs. Chat events may arrive after later system events (the server queues
   *  them separately), so "seq <= lastSeq" cannot be used to drop duplicates. */
  seen: Set<number>
  seenOrder: number[]
}

interface Pending {
  resolve: () => void
  reject: (e: HubError) => void
  timer: ReturnType<typeof setTimeout>
}

export interface HubOptions {
  /** Default: ws(s)://<this origin>/ws */
  url?: string
  /** The session is gone (close 4001, or the handshake was refused and /me says 401);
   *  `reason` is the error code for the login page (`session_ended`, …). */
  onSessionEnded?: (reason: string) => void
  /** An `error` frame that answers no request of ours. */
  onStrayError?: (err: HubError) => void
  /** The server closed us for sending bad frames (4002, 1009): reconnecting would end the same
   *  way, so the client stops. */
  onFatal?: (code: number) => void
}

const REQUEST_TIMEOUT_MS = 10_000
const PING_EVERY_MS = 20_000
const DEAD_AFTER_MS = 50_000
const BACKOFF_BASE_MS = 500
const BACKOFF_MAX_MS = 15_000
const SEEN_KEEP = 1024
const JOIN_TIMEOUT_MS = 10_000
/** `join` answered `unavailable` / `internal`: tries before giving up. */
const JOIN_RETRIES = 5

function defaultUrl(): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${proto}//${location.host}/ws`
}

/** Exponential backoff with "equal jitter": half fixed, half random. */
export function backoffDelay(attempt: number, base = BACKOFF_BASE_MS, max = BACKOFF_MAX_MS): number {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 16))
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2))
}

export class HubClient {
  /** Reactive connection state, for indicators. */
  readonly state: ShallowRef<ConnectionState> = shallowRef('closed')
  /** Who the server says we are (from `welcome`). */
  readonly me: ShallowRef<UserRef | null> = shallowRef(null)
  /** server clock − local clock, from `welcome`/`pong` (ms). */
  serverOffset = 0

  private readonly url: string
  private readonly opts: HubOptions
  private ws: WebSocket | null = null
  private wanted = false
  private attempt = 0
  private everOpened = false
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null
  private pingTimer: ReturnType<typeof setInterval> | null = null
  private lastFrameAt = 0
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  /** Request ids of `join` frames in flight → room. */
  private readonly joins = new Map<number, number>()
  private joinTimer: ReturnType<typeof setTimeout> | null = null
  /** Retries of a refused join, per room (reset when the room answers). */
  private readonly joinRetries = new Map<number, number>()
  private readonly rooms = new Map<number, RoomEntry>()

  constructor(opts: HubOptions = {}) {
    this.opts = opts
    this.url = opts.url ?? defaultUrl()
  }

  /** Server time now (Unix ms), from the local clock and the measured offset. */
  serverNow(): number {
    return Date.now() + this.serverOffset
  }

  connect(): void {
    if (this.wanted) return
    this.wanted = true
    window.addEventListener('online', this.onOnline)
    document.addEventListener('visibilitychange', this.onVisible)
    this.open()
  }

  /** Closes for good (page left). */
  close(): void {
    this.wanted = false
    window.removeEventListener('online', this.onOnline)
    document.removeEventListener('visibilitychange', this.onVisible)
    this.clearReconnect()
    this.stopPing()
    if (this.joinTimer !== null) clearTimeout(this.joinTimer)
    this.joinTimer = null
    this.joins.clear()
    const ws = this.ws
    this.ws = null
    if (ws) {
      detach(ws)
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000, 'bye')
    }
    this.failPending(new HubError('closed', t.live.errors.notConnected))
    this.rooms.clear()
    this.state.value = 'closed'
  }

  /** Reconnects now instead of waiting for the backoff timer. */
  reconnectNow(): void {
    if (!this.wanted || this.ws) return
    this.clearReconnect()
    this.open()
  }

  /** Enters a room (now, or as soon as the socket is open) and after every reconnect. */
  join(room: number, listener: RoomListener): void {
    this.rooms.set(room, { listener, lastSeq: null, floor: 0, seen: new Set(), seenOrder: [] })
    if (this.isOpen()) this.sendJoin(room)
  }

  leave(room: number): void {
    this.joinRetries.delete(room)
    if (!this.rooms.delete(room)) return
    if (this.isOpen()) this.sendFrame({ type: 'leave', room })
  }

  /** Joins a registered room again (an action was answered `unavailable`: the room reloaded). */
  rejoin(room: number): void {
    if (this.rooms.has(room) && this.isOpen()) this.sendJoin(room)
  }

  /** Sends a request and waits for its `ack`; rejects with the server's error. */
  request(msg: Msg): Promise<void> {
    if (!this.isOpen()) return Promise.reject(new HubError('not_connected', t.live.errors.notConnected))
    const id = this.takeId()
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new HubError('timeout', t.live.errors.timeout))
      }, REQUEST_TIMEOUT_MS)
      this.pending.set(id, { resolve, reject, timer })
      this.sendFrame(msg, id)
    })
  }

  // ------------------------------------------------------------------ internals

  private readonly onOnline = () => this.reconnectNow()
  private readonly onVisible = () => {
    if (document.visibilityState === 'visible') this.reconnectNow()
  }

  private isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN
  }

  private takeId(): number {
    const id = this.nextId
    // ids are u32 on the wire.
    this.nextId = this.nextId >= 0xffff_fff0 ? 1 : this.nextId + 1
    return id
  }

  private sendFrame(msg: Msg, id?: number): void {
    const frame: ClientFrame = id === undefined ? { v: PROTOCOL_VERSION, ...msg } : { v: PROTOCOL_VERSION, id, ...msg }
    this.ws?.send(JSON.stringify(frame))
  }

  private sendJoin(room: number): void {
    const entry = this.rooms.get(room)
    if (!entry) return
    this.forgetJoin(room)
    const id = this.takeId()
    this.joins.set(id, room)
    const msg: Msg =
      entry.lastSeq === null ? { type: 'join', room } : { type: 'join', room, last_seq: entry.lastSeq }
    this.sendFrame(msg, id)
    this.armJoinTimer()
  }

  /** A join without any answer for JOIN_TIMEOUT_MS: treat the connection as dead. */
  private armJoinTimer(): void {
    if (this.joinTimer !== null) clearTimeout(this.joinTimer)
    this.joinTimer = setTimeout(() => {
      this.joinTimer = null
      if (this.joins.size === 0 || !this.ws) return
      this.drop()
    }, JOIN_TIMEOUT_MS)
  }

  /** Abandons the current socket at once and reconnects (without waiting for TCP to notice). */
  private drop(): void {
    const ws = this.ws
    if (!ws) return
    detach(ws)
    ws.close()
    this.ws = null
    this.onClosed(1006, true)
  }

  private open(): void {
    if (!this.wanted) return
    this.state.value = this.everOpened || this.attempt > 0 ? 'reconnecting' : 'connecting'
    let ws: WebSocket
    try {
      ws = new WebSocket(this.url)
    } catch {
      this.scheduleReconnect(backoffDelay(this.attempt++))
      return
    }
    this.ws = ws
    let opened = false
    ws.onopen = () => {
      opened = true
      this.everOpened = true
      this.lastFrameAt = Date.now()
      this.state.value = 'open'
      this.startPing()
      for (const room of this.rooms.keys()) this.sendJoin(room)
    }
    ws.onmessage = (ev: MessageEvent) => {
      this.lastFrameAt = Date.now()
      if (typeof ev.data !== 'string') return
      let msg: ServerMsg
      try {
        msg = JSON.parse(ev.data) as ServerMsg
      } catch {
        return
      }
      this.dispatch(msg)
    }
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return
      this.ws = null
      this.onClosed(ev.code, opened)
    }
    // Every error is followed by a close event; nothing to do here.
    ws.onerror = () => {}
  }

  private onClosed(code: number, opened: boolean): void {
    this.stopPing()
    this.joins.clear()
    if (this.joinTimer !== null) clearTimeout(this.joinTimer)
    this.joinTimer = null
    this.failPending(new HubError('disconnected', t.live.errors.notConnected))
    if (!this.wanted) {
      this.state.value = 'closed'
      return
    }
    if (code === CLOSE.SESSION_ENDED) {
      this.close()
      this.opts.onSessionEnded?.('session_ended')
      return
    }
    if (code === CLOSE.PROTOCOL_ERROR || code === CLOSE.MESSAGE_TOO_BIG) {
      this.close()
      this.opts.onFatal?.(code)
      return
    }
    this.state.value = 'reconnecting'
    if (code === CLOSE.TOO_SLOW) {
      // Fell behind: come back at once and resume from last_seq.
      this.scheduleReconnect(Math.round(Math.random() * 300))
      return
    }
    if (code === CLOSE.GOING_AWAY) {
      // The server is restarting: spread the reconnects of all its clients.
      this.scheduleReconnect(250 + Math.round(Math.random() * 2000))
      return
    }
    if (!opened) void this.checkSession()
    this.scheduleReconnect(backoffDelay(this.attempt++))
  }

  /**
   * The handshake failed. A browser cannot see the HTTP status of a refused upgrade, so ask the
   * REST API: a 401 there means the session is gone.
   */
  private async checkSession(): Promise<void> {
    try {
      await api.me(true)
    } catch (e) {
      if (isApiError(e) && e.status === 401 && this.wanted) {
        this.close()
        this.opts.onSessionEnded?.(e.code)
      }
    }
  }

  private scheduleReconnect(delay: number): void {
    this.clearReconnect()
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null
      this.open()
    }, delay)
  }

  private clearReconnect(): void {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
  }

  private startPing(): void {
    this.stopPing()
    this.pingTimer = setInterval(() => {
      const ws = this.ws
      if (!ws || ws.readyState !== WebSocket.OPEN) return
      if (Date.now() - this.lastFrameAt > DEAD_AFTER_MS) {
        // Silent for too long: treat as dead without waiting for the TCP timeout.
        this.drop()
        return
      }
      this.sendFrame({ type: 'ping' })
    }, PING_EVERY_MS)
  }

  private stopPing(): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer)
    this.pingTimer = null
  }

  private failPending(err: HubError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    this.pending.clear()
  }

  private dispatch(msg: ServerMsg): void {
    switch (msg.type) {
      case 'welcome':
        this.me.value = msg.user
        this.serverOffset = msg.server_time - Date.now()
        this.attempt = 0
        return
      case 'pong':
        this.serverOffset = msg.server_time - Date.now()
        return
      case 'ack': {
        const p = this.pending.get(msg.id)
        if (p) {
          this.pending.delete(msg.id)
          clearTimeout(p.timer)
          p.resolve()
        }
        return
      }
      case 'error': {
        const err = new HubError(msg.code, msg.message)
        if (msg.id !== undefined) {
          const room = this.joins.get(msg.id)
          if (room !== undefined) {
            this.joins.delete(msg.id)
            this.joinRefused(room, err)
            return
          }
          const p = this.pending.get(msg.id)
          if (p) {
            this.pending.delete(msg.id)
            clearTimeout(p.timer)
            p.reject(err)
            return
          }
        }
        this.opts.onStrayError?.(err)
        return
      }
      case 'joined':
      case 'resync': {
        const entry = this.rooms.get(msg.room)
        if (!entry) return
        this.answered(msg.room)
        entry.lastSeq = msg.state.seq
        entry.floor = msg.state.seq
        entry.seen.clear()
        entry.seenOrder = []
        entry.listener.snapshot(msg.role, msg.state, msg.type)
        return
      }
      case 'resumed': {
        const entry = this.rooms.get(msg.room)
        if (!entry) return
        this.answered(msg.room)
        entry.listener.resumed(msg.role)
        return
      }
      case 'event': {
        const entry = this.rooms.get(msg.room)
        if (!entry || msg.seq <= entry.floor || entry.seen.has(msg.seq)) return
        entry.seen.add(msg.seq)
        entry.seenOrder.push(msg.seq)
        if (entry.seenOrder.length > SEEN_KEEP) entry.seen.delete(entry.seenOrder.shift()!)
        if (entry.lastSeq === null || msg.seq > entry.lastSeq) entry.lastSeq = msg.seq
        entry.listener.event(msg)
        return
      }
      case 'stats':
        this.rooms.get(msg.room)?.listener.stats(msg)
        return
      case 'left':
        return
    }
  }

  /** `unavailable` (the room was reloading) and `internal` are worth another try; the rest
   *  (`not_found`: no such room or no access) is final. */
  private joinRefused(room: number, err: HubError): void {
    const entry = this.rooms.get(room)
    if (!entry) return
    const tries = this.joinRetries.get(room) ?? 0
    if ((err.code === 'unavailable' || err.code === 'internal') && tries < JOIN_RETRIES) {
      this.joinRetries.set(room, tries + 1)
      const delay = err.code === 'unavailable' ? 200 + Math.random() * 600 : backoffDelay(tries + 1)
      setTimeout(() => {
        if (this.rooms.get(room) === entry) this.rejoin(room)
      }, delay)
      return
    }
    this.joinRetries.delete(room)
    this.rooms.delete(room)
    entry.listener.joinFailed(err)
  }

  private forgetJoin(room: number): void {
    for (const [id, r] of this.joins) if (r === room) this.joins.delete(id)
  }

  private answered(room: number): void {
    this.forgetJoin(room)
    this.joinRetries.delete(room)
    if (this.joins.size === 0 && this.joinTimer !== null) {
      clearTimeout(this.joinTimer)
      this.joinTimer = null
    }
  }
}

function detach(ws: WebSocket): void {
  ws.onopen = null
  ws.onmessage = null
  ws.onclose = null
  ws.onerror = null
}

// ====================================================================== useLiveRoom

/** Chat messages kept in the list. */
export const CHAT_KEEP = 200
/** Longest chat message, in characters (Unicode scalar values, as the server counts). */
export const CHAT_MAX_CHARS = 200
/** Most likes one `like` frame may carry, and the shortest gap between two of them. */
const LIKE_MAX_BATCH = 500
const LIKE_EVERY_MS = 250
/** Removed message ids remembered, so that a removed chat arriving late is not shown. */
const REMOVED_KEEP = 512

export interface Toast {
  id: number
  kind: 'error' | 'info'
  text: string
}

export interface LiveRoomState {
  connection: ConnectionState
  /** The room's snapshot has arrived (and the connection is up). */
  joined: boolean
  /** The server refused the join (no such room, no access); shown instead of the room. */
  joinError: string | null
  /** The connection was closed for good (the client sent bad frames): reload the page. */
  fatal: string | null
  role: MemberRole | null
  live: boolean
  /** A live ended while this page watched it (the snapshot alone cannot tell idle from ended). */
  sawEnd: boolean
  host: UserRef | null
  viewers: number
  peak: number
  /** Shown count: the server's total plus our taps not yet counted by it. */
  likes: number
  pinned: ChatMessage | null
  /** What the room's main publisher (host, or the class's instructor) sends now (play it with
   *  WHEP), or null. */
  media: RoomMedia | null
  /** Everyone publishing now: the main publisher first, then the guests (trainees on a live
   *  class's stage, a proctoring room's examinees) in the order they started. */
  publishers: RoomMedia[]
  /** Who is invited on a live class's stage (from GET …/stage on join, then `stage_changed`). */
  stage: UserRef[]
  /** Trainees on the stage at most (from GET …/stage), null until known. */
  stageMax: number | null
  /** Everyone present, for small rooms (the snapshot, then member_joined / member_left); null
   *  for large ones. */
  members: UserRef[] | null
  /** Oldest first, at most CHAT_KEEP; removed messages are taken out. */
  chat: ChatMessage[]
  /** Until when (server Unix ms) I am muted, when known. */
  mutedUntil: number | null
  /** Users known to be muted (from events seen on this page) → until (server Unix ms). */
  muted: Record<number, number>
  toasts: Toast[]
}

export interface LiveRoom {
  state: LiveRoomState
  me: Readonly<ShallowRef<UserRef | null>>
  /** Whole minutes of my mute left (0 = not muted). */
  mutedMinutesLeft: ComputedRef<number>
  canModerate: () => boolean
  isHost: () => boolean
  /** Resolves when the server took it; rejects with the server's message. */
  sendChat: (text: string) => Promise<void>
  /** Counts taps at once and sends them in batches (at most 4 frames a second). */
  like: (taps?: number) => void
  start: () => Promise<boolean>
  end: () => Promise<boolean>
  mute: (user: UserRef, minutes: number) => Promise<boolean>
  unmute: (user: UserRef) => Promise<boolean>
  remove: (message: number) => Promise<boolean>
  pin: (message: number) => Promise<boolean>
  unpin: () => Promise<boolean>
  toast: (text: string, kind?: Toast['kind']) => void
  dismissToast: (id: number) => void
  reconnectNow: () => void
  /** New chat as it arrives (not the snapshot's), for the danmaku layer. */
  onChat: (fn: (m: ChatMessage, mine: boolean) => void) => () => void
  /** A message was taken down (so the danmaku layer drops it too). */
  onRemoved: (fn: (message: number) => void) => () => void
  /** Someone else entered (small rooms only). */
  onArrival: (fn: (user: UserRef) => void) => () => void
  /** The selling tools' events (`at`: server Unix ms of the event). */
  onCommerce: (fn: (ev: CommerceEvent, at: number) => void) => () => void
  /** A snapshot replaced the room's state (`joined` or `resync`): state kept elsewhere (the
   *  room's commerce) must be loaded again; a `resumed` replays the missed events instead. */
  onSnapshot: (fn: (kind: 'joined' | 'resync') => void) => () => void
  /** Server time now (Unix ms), for countdowns. */
  serverNow: () => number
}

/** Characters as the server counts them (a surrogate pair is one). */
export function charCount(text: string): number {
  let n = 0
  for (const _ of text) n++
  return n
}

/**
 * Reactive state and actions of one live room over one WebSocket for the page. `roomId` may
 * change (the page is reused for another room): the old room is left and the new one joined.
 */
export interface LiveRoomOptions {
  /** The room has a stage (a live class): who is on it is asked for on every (re)join. */
  stage?: () => boolean
}

export function useLiveRoom(roomId: () => number, opts: LiveRoomOptions = {}): LiveRoom {
  const router = useRouter()
  const state = reactive<LiveRoomState>(emptyState())
  const nowTick = shallowRef(Date.now())
  let toastSeq = 0
  const chatListeners = new Set<(m: ChatMessage, mine: boolean) => void>()
  const arrivalListeners = new Set<(u: UserRef) => void>()
  const removedListeners = new Set<(message: number) => void>()
  const commerceListeners = new Set<(ev: CommerceEvent, at: number) => void>()
  const snapshotListeners = new Set<(kind: 'joined' | 'resync') => void>()
  let removed = new Set<number>()
  let removedOrder: number[] = []

  const hub = new HubClient({
    onSessionEnded(reason) {
      clearSession()
      const current = router.currentRoute.value
      void router.replace({ name: 'login', query: { next: current.fullPath, reason } })
    },
    onStrayError(err) {
      toast(err.message)
    },
    onFatal() {
      state.fatal = t.live.errors.protocol
    },
  })

  /** An action answered `unavailable`: the room reloaded on the server; join it again. */
  function recover(e: unknown) {
    if (e instanceof HubError && e.code === 'unavailable' && currentRoom) hub.rejoin(currentRoom)
  }
  const me = hub.me

  watch(
    hub.state,
    (c) => {
      state.connection = c
      if (c !== 'open') state.joined = false
    },
    { immediate: true, flush: 'sync' },
  )

  function toast(text: string, kind: Toast['kind'] = 'error') {
    const id = ++toastSeq
    state.toasts.push({ id, kind, text })
    if (state.toasts.length > 4) state.toasts.shift()
    setTimeout(() => dismissToast(id), kind === 'error' ? 5000 : 3000)
  }
  function dismissToast(id: number) {
    const i = state.toasts.findIndex((x) => x.id === id)
    if (i >= 0) state.toasts.splice(i, 1)
  }

  const mutedMinutesLeft = computed(() => {
    const until = state.mutedUntil
    if (until === null) return 0
    const left = until - (nowTick.value + hub.serverOffset)
    // Rounded up like the server's message; a second of clock skew does not add a minute.
    return left > 1000 ? Math.ceil((left - 1000) / 60_000) : 0
  })
  const ticker = setInterval(() => {
    nowTick.value = Date.now()
    if (state.mutedUntil !== null && mutedMinutesLeft.value === 0) state.mutedUntil = null
  }, 5000)

  // ---- likes: counted at once, sent in batches
  let likeQueued = 0
  let likeInflight = 0
  let likeTimer: ReturnType<typeof setTimeout> | null = null
  let lastLikeSent = 0

  function scheduleLikes() {
    if (likeTimer !== null || likeQueued === 0) return
    const wait = Math.max(0, lastLikeSent + LIKE_EVERY_MS - Date.now())
    likeTimer = setTimeout(flushLikes, wait)
  }
  function flushLikes() {
    likeTimer = null
    if (likeQueued === 0 || !state.joined) return
    const count = Math.min(likeQueued, LIKE_MAX_BATCH)
    likeQueued -= count
    likeInflight += count
    lastLikeSent = Date.now()
    const room = currentRoom
    hub
      .request({ type: 'like', room, count })
      .catch((e: unknown) => {
        recover(e)
        // Lost with the connection (or the page closing): nothing the user can act on.
        if (room === currentRoom && e instanceof HubError && e.code !== 'disconnected' && e.code !== 'closed') {
          toast(e.message)
        }
      })
      .finally(() => {
        likeInflight -= count
      })
    scheduleLikes()
  }

  // ---- room events
  let currentRoom = 0

  // ---- the stage of a live class: asked for on join, then kept by `stage_changed`
  /** `stage_changed` events seen: a GET answered after one of them is older than it. */
  let stageEvents = 0
  async function loadStage() {
    const room = currentRoom
    if (!room || !opts.stage?.()) return
    const seen = stageEvents
    try {
      const view = await stageApi.get(room)
      if (room !== currentRoom) return
      state.stageMax = view.max
      if (seen === stageEvents) state.stage = view.stage
    } catch {
      // The events keep it; the next join asks again.
    }
  }
  // The room's kind may be known only after the snapshot arrived.
  watch(
    () => !!opts.stage?.(),
    (has) => {
      if (has && state.joined) void loadStage()
    },
  )

  function remember(id: number) {
    removed.add(id)
    removedOrder.push(id)
    if (removedOrder.length > REMOVED_KEEP) removed.delete(removedOrder.shift()!)
  }

  function pushChat(m: ChatMessage) {
    if (removed.has(m.id) || state.chat.some((c) => c.id === m.id)) return false
    // Chat can arrive slightly out of order (sampled frames queue apart): keep the list by id.
    const list = state.chat
    let i = list.length
    while (i > 0 && list[i - 1]!.id > m.id) i--
    list.splice(i, 0, m)
    if (list.length > CHAT_KEEP) list.splice(0, list.length - CHAT_KEEP)
    return true
  }

  const listener: RoomListener = {
    snapshot(role, snap, kind) {
      state.joined = true
      state.joinError = null
      state.role = role
      state.live = snap.live
      if (snap.live) state.sawEnd = false
      state.host = snap.host
      state.viewers = snap.viewers
      state.peak = snap.peak
      state.likes = snap.likes + likeQueued + likeInflight
      state.pinned = snap.pinned
      state.media = snap.media
      state.publishers = snap.publishers ?? (snap.media ? [snap.media] : [])
      state.members = snap.members ? [...snap.members] : null
      state.chat = snap.recent_chat.slice(-CHAT_KEEP)
      removed = new Set()
      removedOrder = []
      scheduleLikes()
      void loadStage()
      for (const fn of snapshotListeners) fn(kind)
    },
    resumed(role) {
      state.joined = true
      state.joinError = null
      state.role = role
      scheduleLikes()
    },
    event(msg) {
      const ev = msg.event
      const mine = (id: number) => me.value?.id === id
      switch (ev.kind) {
        case 'live_started':
          state.live = true
          state.sawEnd = false
          state.host = ev.host
          toast(t.live.notice.liveStarted, 'info')
          break
        case 'live_ended':
          state.live = false
          state.sawEnd = true
          state.peak = Math.max(state.peak, ev.peak)
          state.likes = Math.max(state.likes, ev.likes + likeQueued + likeInflight)
          break
        case 'chat':
          if (pushChat(ev.message)) {
            const own = mine(ev.message.user.id)
            for (const fn of chatListeners) fn(ev.message, own)
          }
          break
        case 'message_removed': {
          remember(ev.message)
          const i = state.chat.findIndex((c) => c.id === ev.message)
          if (i >= 0) state.chat.splice(i, 1)
          // The server unpins a removed message without a message_unpinned event.
          if (state.pinned?.id === ev.message) state.pinned = null
          for (const fn of removedListeners) fn(ev.message)
          break
        }
        case 'message_pinned':
          state.pinned = ev.message
          break
        case 'message_unpinned':
          state.pinned = null
          break
        case 'user_muted':
          state.muted[ev.user] = ev.until
          if (mine(ev.user)) {
            state.mutedUntil = ev.until
            nowTick.value = Date.now()
            toast(t.live.notice.youMuted(mutedMinutesLeft.value || 1))
          }
          break
        case 'user_unmuted':
          delete state.muted[ev.user]
          if (mine(ev.user)) {
            state.mutedUntil = null
            toast(t.live.notice.youUnmuted, 'info')
          }
          break
        case 'member_joined':
          if (state.members && !state.members.some((u) => u.id === ev.user.id)) state.members.push(ev.user)
          if (!mine(ev.user.id)) for (const fn of arrivalListeners) fn(ev.user)
          break
        case 'member_left':
          if (state.members) state.members = state.members.filter((u) => u.id !== ev.user.id)
          break
        case 'media_changed':
          state.media = ev.media
          state.publishers = ev.publishers ?? (ev.media ? [ev.media] : [])
          break
        case 'stage_changed':
          stageEvents++
          state.stage = ev.stage
          break
        case 'commerce':
          for (const fn of commerceListeners) fn(ev.event, msg.at)
          break
      }
    },
    stats(s) {
      state.viewers = s.viewers
      state.peak = s.peak
      // Likes only grow: never show less than what we already counted locally.
      state.likes = Math.max(state.likes, s.likes + likeQueued + likeInflight)
    },
    joinFailed(err) {
      state.joined = false
      state.joinError = err.message || t.live.errors.joinFailed
    },
  }

  function enter(room: number) {
    if (currentRoom) hub.leave(currentRoom)
    if (likeTimer !== null) clearTimeout(likeTimer)
    likeTimer = null
    likeQueued = 0
    Object.assign(state, { ...emptyState(), connection: state.connection, fatal: state.fatal, toasts: state.toasts })
    currentRoom = room
    if (room > 0) hub.join(room, listener)
  }

  watch(roomId, (room) => enter(room), { immediate: true })
  onMounted(() => hub.connect())
  onBeforeUnmount(() => {
    // Send the taps still waiting, if we can.
    if (likeQueued > 0 && state.joined) flushLikes()
    clearInterval(ticker)
    if (likeTimer !== null) clearTimeout(likeTimer)
    hub.close()
  })

  // ---- actions
  async function act(msg: Msg, done?: string): Promise<boolean> {
    try {
      await hub.request(msg)
      if (done) toast(done, 'info')
      return true
    } catch (e) {
      recover(e)
      toast(e instanceof HubError ? e.message : t.errors.unknown)
      return false
    }
  }

  async function sendChat(text: string): Promise<void> {
    try {
      await hub.request({ type: 'chat', room: currentRoom, text })
    } catch (e) {
      recover(e)
      if (e instanceof HubError && e.code === 'muted') {
        // The snapshot does not say who is muted; learn it from the refusal ("…N 分钟后可再发言").
        const m = /(\d+)\s*分钟/.exec(e.message)
        if (m) state.mutedUntil = hub.serverNow() + Number(m[1]) * 60_000
      }
      throw e
    }
  }

  function like(taps = 1) {
    if (!state.joined || taps <= 0) return
    likeQueued += taps
    state.likes += taps
    scheduleLikes()
  }

  return {
    state,
    me,
    mutedMinutesLeft,
    canModerate: () => state.role === 'host' || state.role === 'instructor',
    isHost: () => state.role === 'host',
    sendChat,
    like,
    start: () => act({ type: 'start_live', room: currentRoom }),
    end: () => act({ type: 'end_live', room: currentRoom }),
    mute: (user, minutes) => act({ type: 'mute', room: currentRoom, user: user.id, minutes }, t.live.notice.muted(user.name)),
    unmute: (user) => act({ type: 'unmute', room: currentRoom, user: user.id }, t.live.notice.unmuted(user.name)),
    remove: (message) => act({ type: 'remove_message', room: currentRoom, message }, t.live.notice.removed),
    pin: (message) => act({ type: 'pin_message', room: currentRoom, message }, t.live.notice.pinned),
    unpin: () => act({ type: 'unpin_message', room: currentRoom }, t.live.notice.unpinned),
    toast,
    dismissToast,
    reconnectNow: () => hub.reconnectNow(),
    onChat(fn) {
      chatListeners.add(fn)
      return () => chatListeners.delete(fn)
    },
    onRemoved(fn) {
      removedListeners.add(fn)
      return () => removedListeners.delete(fn)
    },
    onArrival(fn) {
      arrivalListeners.add(fn)
      return () => arrivalListeners.delete(fn)
    },
    onCommerce(fn) {
      commerceListeners.add(fn)
      return () => commerceListeners.delete(fn)
    },
    onSnapshot(fn) {
      snapshotListeners.add(fn)
      return () => snapshotListeners.delete(fn)
    },
    serverNow: () => hub.serverNow(),
  }
}

function emptyState(): LiveRoomState {
  return {
    connection: 'closed',
    joined: false,
    joinError: null,
    fatal: null,
    role: null,
    live: false,
    sawEnd: false,
    host: null,
    viewers: 0,
    peak: 0,
    likes: 0,
    pinned: null,
    media: null,
    publishers: [],
    stage: [],
    stageMax: null,
    members: null,
    chat: [],
    mutedUntil: null,
    muted: {},
    toasts: [],
  }
}
