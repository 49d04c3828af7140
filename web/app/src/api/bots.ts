// Simulated buyer traffic (模拟买家): a live room's crowd of bot buyers (commerce/src/bots.rs).
// Rates are per visit, 0–1; times are Unix milliseconds.
import { request } from './client'
import type { Id } from './types'

const V1 = '/api/v1'
const seg = (id: Id) => encodeURIComponent(String(id))

export interface BotSettings {
  /** Most bots in the room at once, 1–500. */
  count: number
  /** Arrivals per minute, 1–600. */
  arrivals_per_minute: number
  /** Share of visits that like / comment / buy one unit (0–1). */
  like_rate: number
  comment_rate: number
  buy_rate: number
  /** Average stay of a visit, 1–240 minutes (default 10). */
  stay_minutes?: number
}

export type BotStopReason = 'removed' | 'live_ended'

export interface RoomBots {
  room_id: number
  running: boolean
  /** Null when the room never had bots. */
  settings: Required<BotSettings> | null
  started_at: number | null
  stopped_at: number | null
  stop_reason: BotStopReason | null
  /** Bots in the room now. */
  present: number
  /** Since started_at. */
  likes: number
  comments: number
  orders: number
  paid_orders: number
}

export const botsApi = {
  get: (room: Id) => request<RoomBots>('GET', `${V1}/rooms/${seg(room)}/bots`),
  /** Start, or change the settings of the running crowd (the room must be live). */
  put: (room: Id, body: BotSettings) => request<RoomBots>('PUT', `${V1}/rooms/${seg(room)}/bots`, { body }),
  remove: (room: Id) => request<void>('DELETE', `${V1}/rooms/${seg(room)}/bots`),
}
