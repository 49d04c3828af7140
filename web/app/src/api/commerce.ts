// The commerce API (commerce/src/*.rs): shops, products and SKUs, orders, the wallet, and the
// live room's selling tools. Money is integer cents, times are Unix milliseconds. The room's
// real-time side arrives as the hub's `commerce` events (CommerceEvent in protocol.ts).
import { request } from './client'
import type { Id, Ref } from './types'
import type { VideoSummary } from './videos'

const V1 = '/api/v1'
const seg = (id: Id) => encodeURIComponent(String(id))

// ---------------------------------------------------------------- shops, products, SKUs

export type ShopStatus = 'open' | 'closed'

export interface ShopView {
  id: number
  owner: Ref
  class_id: number
  name: string
  category: string
  logo_url: string | null
  description: string
  status: ShopStatus
  quick_replies: string[]
  /** Whether the caller owns it. */
  mine: boolean
  created_at: number
  /** Listed products the caller can see (0 for buyers while the shop is closed). */
  listed_products: number
  /** Up to 3 of them, newest first: the shop's card in the mall. */
  preview: ShopPreview[]
}

/** A listed product on a shop's card in the mall. */
export interface ShopPreview {
  product_id: number
  title: string
  image: string | null
  /** The lowest price of its SKUs. */
  price_cents: number
}

export interface CreateShop {
  name: string
  category: string
  logo_url?: string | null
  description?: string
  class_id?: number
}

export interface UpdateShop {
  name?: string
  category?: string
  logo_url?: string
  description?: string
  status?: ShopStatus
  quick_replies?: string[]
}

export interface SkuView {
  id: number
  spec: string
  price_cents: number
  /** Stock that can be ordered now. */
  stock: number
  sold: number
}

export type ProductStatus = 'draft' | 'listed' | 'delisted'

export interface ProductView {
  id: number
  shop_id: number
  shop_name: string
  title: string
  description: string
  images: string[]
  status: ProductStatus
  skus: SkuView[]
  /** Its ready short videos (短视频), oldest first. */
  videos: VideoSummary[]
  created_at: number
  updated_at: number
}

export interface NewSku {
  spec: string
  price_cents: number
  stock: number
}

export interface CreateProduct {
  title: string
  description?: string
  images?: string[]
  skus: NewSku[]
  /** List it at once (default: draft). */
  listed?: boolean
}

export interface UpdateProduct {
  title?: string
  description?: string
  images?: string[]
  status?: 'listed' | 'delisted'
}

export type StockReason = 'adjust' | 'order' | 'cancel' | 'refund' | 'return' | 'flash_sale' | 'flash_sale_return'

export interface StockChange {
  id: number
  delta: number
  stock_after: number
  reason: StockReason | string
  ref_id: number | null
  note: string
  at: number
}

// ---------------------------------------------------------------- orders, wallet

export type OrderStatus =
  | 'pending_payment'
  | 'paid'
  | 'shipped'
  | 'completed'
  | 'cancelled'
  | 'refund_requested'
  | 'return_requested'
  | 'return_approved'
  | 'return_shipped'
  | 'refunded'

export const ORDER_STATUSES: readonly OrderStatus[] = [
  'pending_payment',
  'paid',
  'shipped',
  'completed',
  'refund_requested',
  'return_requested',
  'return_approved',
  'return_shipped',
  'refunded',
  'cancelled',
] as const

export type OrderAction =
  | 'pay'
  | 'cancel'
  | 'ship'
  | 'confirm'
  | 'refund'
  | 'approve-refund'
  | 'reject-refund'
  | 'return'
  | 'approve-return'
  | 'reject-return'
  | 'ship-return'
  | 'confirm-return'
  | 'withdraw'

export interface OrderEventView {
  from_status: OrderStatus | null
  to_status: OrderStatus
  /** place | pay | cancel | expire | ship | confirm_receipt | request_refund | approve_refund | reject_refund |
   *  request_return | approve_return | reject_return | ship_return | confirm_return | withdraw */
  action: string
  actor_id: number | null
  note: string
  at: number
}

export interface OrderView {
  id: number
  status: OrderStatus
  buyer_id: number
  buyer_name: string
  shop_id: number
  shop_name: string
  sku_id: number
  product_title: string
  sku_spec: string
  quantity: number
  unit_price_cents: number
  subtotal_cents: number
  discount_cents: number
  total_cents: number
  room_id: number | null
  flash_sale_id: number | null
  coupon_claim_id: number | null
  tracking_no: string | null
  refund_reason: string | null
  /** The tracking number of the goods the buyer sent back (退货运单号). */
  return_tracking_no: string | null
  address: string
  /** Unpaid orders are cancelled at this time. */
  pay_deadline: number
  created_at: number
  updated_at: number
  /** Oldest first; filled in the detail view only. */
  events: OrderEventView[]
}

export interface PlaceOrder {
  sku_id: number
  quantity: number
  room_id?: number
  coupon_claim_id?: number
  address?: string
}

export type OrderSide = 'buyer' | 'merchant'

export interface WalletEntry {
  delta_cents: number
  balance_after: number
  /** opening | order_payment | order_income | refund | refund_clawback | red_packet_send | red_packet_grab | red_packet_return */
  reason: string
  ref_id: number | null
  at: number
}

export interface WalletView {
  balance_cents: number
  entries: WalletEntry[]
}

// ---------------------------------------------------------------- room tools

export interface ShelfItem {
  product_id: number
  shop_id: number
  title: string
  image: string | null
  price_cents: number
  stock: number
  pinned: boolean
  /** The product's ready short videos (短视频). */
  videos: VideoSummary[]
}

export interface FlashSaleView {
  id: number
  room_id: number
  shop_id: number
  product_id: number
  sku_id: number
  title: string
  spec: string
  price_cents: number
  original_price_cents: number
  stock: number
  sold: number
  remaining: number
  per_user_limit: number
  starts_at: number
  ends_at: number
  pay_seconds: number
  status: 'running' | 'closed'
}

export interface CreateFlashSale {
  sku_id: number
  price_cents: number
  stock: number
  per_user_limit: number
  starts_in_seconds: number
  duration_seconds: number
  pay_seconds?: number
}

export interface CouponView {
  id: number
  shop_id: number
  room_id: number | null
  title: string
  threshold_cents: number
  discount_cents: number
  valid_from: number
  valid_until: number
  total_quota: number
  per_user_limit: number
  claimed: number
}

export interface CreateCoupon {
  title: string
  threshold_cents: number
  discount_cents: number
  valid_minutes: number
  total_quota: number
  per_user_limit: number
}

export interface ClaimView {
  id: number
  coupon: CouponView
  claimed_at: number
  used_order_id: number | null
  usable: boolean
}

export interface GrabView {
  user_id: number
  user_name: string
  amount_cents: number
  at: number
}

export interface RedPacketView {
  id: number
  room_id: number
  sender_id: number
  sender_name: string
  total_cents: number
  count: number
  greeting: string
  expires_at: number
  status: 'active' | 'finished' | 'expired'
  grabbed_count: number
  grabbed_cents: number
  returned_cents: number
  created_at: number
  grabs: GrabView[]
}

export interface SendRedPacket {
  total_cents: number
  count: number
  greeting?: string
  expires_in_seconds?: number
}

export interface Grabbed {
  red_packet_id: number
  amount_cents: number
  balance_cents: number
}

/** The caller's progress in a watch bag, from the stored watch time (saved every 5 s). */
export interface WatchProgress {
  watched_ms: number
  required_ms: number
}

export type LuckyBagTask = 'comment' | 'watch'

export interface LuckyBagView {
  id: number
  room_id: number
  prize: string
  winners: number
  task: LuckyBagTask
  keyword: string | null
  /** Minutes to watch (task `watch`); null for comment bags. */
  watch_minutes: number | null
  starts_at: number
  draws_at: number
  /** SHA-256 (hex) of the seed's 32 bytes. */
  commitment: string
  status: 'open' | 'drawn'
  seed: string | null
  entrants: number[] | null
  winner_list: Ref[] | null
  drawn_at: number | null
  /** Only from `luckyBag(id)`: my progress in an open watch bag (null for the host). */
  my_watch: WatchProgress | null
}

export type LaunchLuckyBag =
  | { prize: string; winners: number; task: 'comment'; keyword: string; duration_seconds: number }
  /** `duration_seconds` must be at least `watch_minutes` × 60. */
  | { prize: string; winners: number; task: 'watch'; watch_minutes: number; duration_seconds: number }

export interface RoomCommerce {
  shelf: ShelfItem[]
  pinned: number | null
  flash_sales: FlashSaleView[]
  coupons: CouponView[]
  red_packets: RedPacketView[]
  lucky_bags: LuckyBagView[]
}

/** A key for `Idempotency-Key`: 1–64 of [A-Za-z0-9_-]. */
export function newIdempotencyKey(): string {
  const c = globalThis.crypto
  if (c && typeof c.randomUUID === 'function') return c.randomUUID()
  const bytes = new Uint8Array(16)
  c.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

export const commerceApi = {
  wallet: () => request<WalletView>('GET', `${V1}/wallet`),

  // Shops
  myShop: () => request<ShopView>('GET', `${V1}/shops/mine`),
  /** The mall: the shops of the classes in the caller's scope (optionally one class). */
  shops: (classId?: number) => request<ShopView[]>('GET', `${V1}/shops`, { query: { class_id: classId } }),
  shop: (id: Id) => request<ShopView>('GET', `${V1}/shops/${seg(id)}`),
  createShop: (body: CreateShop) => request<ShopView>('POST', `${V1}/shops`, { body }),
  updateShop: (id: Id, body: UpdateShop) => request<ShopView>('PATCH', `${V1}/shops/${seg(id)}`, { body }),
  products: (shop: Id) => request<ProductView[]>('GET', `${V1}/shops/${seg(shop)}/products`),
  product: (id: Id) => request<ProductView>('GET', `${V1}/products/${seg(id)}`),
  createProduct: (shop: Id, body: CreateProduct) =>
    request<ProductView>('POST', `${V1}/shops/${seg(shop)}/products`, { body }),
  updateProduct: (id: Id, body: UpdateProduct) => request<ProductView>('PATCH', `${V1}/products/${seg(id)}`, { body }),
  addSku: (product: Id, body: NewSku) => request<ProductView>('POST', `${V1}/products/${seg(product)}/skus`, { body }),
  updateSku: (sku: Id, price_cents: number) =>
    request<ProductView>('PATCH', `${V1}/skus/${seg(sku)}`, { body: { price_cents } }),
  adjustStock: (sku: Id, delta: number, note: string) =>
    request<SkuView>('POST', `${V1}/skus/${seg(sku)}/stock`, { body: { delta, note } }),
  stockChanges: (sku: Id) => request<StockChange[]>('GET', `${V1}/skus/${seg(sku)}/stock-changes`),

  // Orders
  orders: (side: OrderSide, status?: OrderStatus | '', room?: number) =>
    request<OrderView[]>('GET', `${V1}/orders`, { query: { as: side, status: status || undefined, room_id: room } }),
  order: (id: Id) => request<OrderView>('GET', `${V1}/orders/${seg(id)}`),
  placeOrder: (body: PlaceOrder, key: string) =>
    request<OrderView>('POST', `${V1}/orders`, { body, headers: { 'Idempotency-Key': key } }),
  /** `trackingNo` only for `ship-return` (without one the server makes a simulated number). */
  orderAction: (id: Id, action: OrderAction, reason?: string, trackingNo?: string) => {
    const body: { reason?: string; tracking_no?: string } = {}
    if (reason) body.reason = reason
    if (trackingNo) body.tracking_no = trackingNo
    return request<OrderView>('POST', `${V1}/orders/${seg(id)}/${action}`, Object.keys(body).length ? { body } : {})
  },

  // Room tools
  roomCommerce: (room: Id) => request<RoomCommerce>('GET', `${V1}/rooms/${seg(room)}/commerce`),
  addToShelf: (room: Id, product_id: number) =>
    request<RoomCommerce>('POST', `${V1}/rooms/${seg(room)}/products`, { body: { product_id } }),
  pin: (room: Id, product_id: number) => request<ShelfItem>('PUT', `${V1}/rooms/${seg(room)}/pin`, { body: { product_id } }),
  unpin: (room: Id) => request<void>('DELETE', `${V1}/rooms/${seg(room)}/pin`),
  createFlashSale: (room: Id, body: CreateFlashSale) =>
    request<FlashSaleView>('POST', `${V1}/rooms/${seg(room)}/flash-sales`, { body }),
  flashSale: (id: Id) => request<FlashSaleView>('GET', `${V1}/flash-sales/${seg(id)}`),
  /** `key`: a fresh Idempotency-Key per tap, the same one when retrying that tap. */
  flashOrder: (id: Id, key: string, quantity = 1) =>
    request<OrderView>('POST', `${V1}/flash-sales/${seg(id)}/orders`, {
      body: { quantity },
      headers: { 'Idempotency-Key': key },
      signal: AbortSignal.timeout?.(15_000),
    }),
  createCoupon: (room: Id, body: CreateCoupon) => request<CouponView>('POST', `${V1}/rooms/${seg(room)}/coupons`, { body }),
  claimCoupon: (id: Id) => request<ClaimView>('POST', `${V1}/coupons/${seg(id)}/claim`),
  myCoupons: () => request<ClaimView[]>('GET', `${V1}/coupons/mine`),
  sendRedPacket: (room: Id, body: SendRedPacket) =>
    request<RedPacketView>('POST', `${V1}/rooms/${seg(room)}/red-packets`, { body }),
  redPacket: (id: Id) => request<RedPacketView>('GET', `${V1}/red-packets/${seg(id)}`),
  grabRedPacket: (id: Id) => request<Grabbed>('POST', `${V1}/red-packets/${seg(id)}/grab`),
  launchLuckyBag: (room: Id, body: LaunchLuckyBag) =>
    request<LuckyBagView>('POST', `${V1}/rooms/${seg(room)}/lucky-bags`, { body }),
  luckyBag: (id: Id) => request<LuckyBagView>('GET', `${V1}/lucky-bags/${seg(id)}`),
}
