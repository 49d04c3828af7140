// The live data dashboard (数据看板) and the reports of past live sessions (直播复盘):
// commerce/src/dashboard.rs and commerce/src/core/diagnosis.rs. Money is integer cents, times
// are Unix milliseconds, `conversion` is 0–1.
import { request } from './client'
import type { Id } from './types'

const V1 = '/api/v1'
const seg = (id: Id) => encodeURIComponent(String(id))

export interface ProductSales {
  title: string
  units: number
  gmv_cents: number
}

export interface MinuteBucket {
  /** Minutes since the live started. */
  minute: number
  orders: number
  gmv_cents: number
  comments: number
}

export interface FlashSaleResult {
  id: number
  title: string
  stock: number
  sold: number
}

export interface Dashboard {
  room_id: number
  title: string
  host_name: string
  live: boolean
  /** Null before the first live. */
  started_at: number | null
  ended_at: number | null
  duration_ms: number
  viewers_now: number
  peak_viewers: number
  /** People who watched while live (the host excluded). */
  unique_viewers: number
  watch_ms_total: number
  avg_watch_ms: number
  likes: number
  comments: number
  commenters: number
  /** Orders placed (any status). */
  orders: number
  /** Paid and not refunded. */
  paid_orders: number
  buyers: number
  gmv_cents: number
  refunded_orders: number
  /** Paying buyers / unique viewers (0–1). */
  conversion: number
  /** Best sellers first (by GMV), at most 20. */
  products: ProductSales[]
  timeline: MinuteBucket[]
  red_packets_sent: number
  red_packet_cents: number
  red_packet_grabs: number
  coupons_offered: number
  coupons_claimed: number
  coupons_used: number
  flash_sales: FlashSaleResult[]
  lucky_bags: number
  /** Of `lucky_bags`, those entered by watching (task `watch`); 0 in older reports. */
  watch_lucky_bags: number
  /** Simulated traffic (模拟买家) within the numbers above: bots among the unique viewers,
   * their comments, their orders (any status) and the GMV of those sold. */
  bot_viewers: number
  bot_comments: number
  bot_orders: number
  bot_gmv_cents: number
  /** When these numbers were computed. */
  at: number
}

export interface Diagnosis {
  worked: string[]
  improve: string[]
}

export interface LiveReport {
  id: number
  room_id: number
  class_id: number
  host_id: number
  started_at: number
  ended_at: number
  dashboard: Dashboard
  diagnosis: Diagnosis
}

export const dashboardApi = {
  /** The current (or last) live session's numbers: host, the class's instructors, supervisors. */
  dashboard: (room: Id) => request<Dashboard>('GET', `${V1}/rooms/${seg(room)}/dashboard`),
  /** One report per ended live session of the room, newest first. */
  roomReports: (room: Id) => request<LiveReport[]>('GET', `${V1}/rooms/${seg(room)}/reports`),
  /** Every session of a class (a trainee gets only their own), newest first. */
  classReports: (cls: Id) => request<LiveReport[]>('GET', `${V1}/classes/${seg(cls)}/live-reports`),
}
