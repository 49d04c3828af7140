// The live room's commerce state: loaded from GET /api/v1/rooms/{id}/commerce when the room is
// joined (and after a resync), then kept current by the hub's `commerce` events. Events that
// arrive while the load is in flight are applied on top of its answer (every handler is an
// idempotent upsert), so nothing is lost in between.
import { onBeforeUnmount, reactive, shallowRef, watch } from 'vue'
import type {
  CommerceEvent,
  CouponCard,
  FlashSaleCard,
  LuckyBagCard,
  ProductCard,
  RedPacketCard,
  UserRef,
} from '../../api/protocol'
import {
  commerceApi,
  newIdempotencyKey,
  type CouponView,
  type FlashSaleView,
  type LuckyBagView,
  type OrderView,
  type RedPacketView,
  type RoomCommerce,
  type ShelfItem,
} from '../../api/commerce'
import { errorMessage, isApiError } from '../../api'
import type { LiveRoom } from '../hub'
import { t } from '../../i18n'

/** The outcome of a 马上抢 tap. */
export type FlashResult =
  | { kind: 'won'; order: OrderView }
  | { kind: 'sold_out' | 'limit' | 'not_open' | 'ended' | 'error'; message: string }
  /** The request may not have reached the server: the next tap retries with the same key. */
  | { kind: 'retry'; message: string }

export interface FlashSaleState {
  card: FlashSaleCard
  /** Set when the server announced the end. */
  ended: { sold: number } | null
  busy: boolean
  result: FlashResult | null
}

export interface PacketState {
  card: RedPacketCard
  /** What I got (cents), once grabbed. */
  grabbed: number | null
  /** Why I could not grab it (already grabbed, empty, expired…). */
  refused: string | null
  finished: boolean
  busy: boolean
}

export interface CouponState {
  card: CouponCard
  /** How many I claimed on this page. */
  claimed: number
  busy: boolean
  error: string | null
}

/** My progress in a watch bag: the server's stored count, advanced here while I watch. */
export interface WatchState {
  /** What is shown (ms): the server's count plus what I watched since it was fetched. */
  shownMs: number
  requiredMs: number
  /** The server's count has reached `requiredMs`. */
  confirmed: boolean
}

export interface BagState {
  card: LuckyBagCard
  /** When it was launched (server ms): comments from then on count. */
  startsAt: number
  /** I sent the keyword (on this page, or it is in the chat), or watched long enough. */
  joined: boolean
  joining: boolean
  drawn: { seed: string; entrants: number; winners: UserRef[] } | null
  /** Watch bags: my progress once fetched; null before, and for whoever cannot enter. */
  watch: WatchState | null
}

export interface OrderNotice {
  key: number
  text: string
  product: string
}

export interface RoomCommerceState {
  loaded: boolean
  loading: boolean
  error: string | null
  shelf: ShelfItem[]
  pinned: ProductCard | null
  sales: FlashSaleState[]
  coupons: CouponState[]
  packets: PacketState[]
  bags: BagState[]
  notice: OrderNotice | null
  /** The red packet whose popup is open. */
  popup: number | null
}

export type RoomCommerceStore = ReturnType<typeof useRoomCommerce>

const NOTICE_MS = 4500
/** How often an open watch bag's progress is fetched again. */
const WATCH_POLL_MS = 10_000
/** The server's count trails real watching by up to one save (5 s) and a write: a shown value
 *  ahead of it by less than this is kept, so the progress does not step back at each fetch. */
const WATCH_LAG_MS = 6_000
/** How long ended sales and finished packets stay on screen. */
const LINGER_MS = 8000

function emptyState(): RoomCommerceState {
  return {
    loaded: false,
    loading: false,
    error: null,
    shelf: [],
    pinned: null,
    sales: [],
    coupons: [],
    packets: [],
    bags: [],
    notice: null,
    popup: null,
  }
}

export function shelfCard(s: ShelfItem): ProductCard {
  return { id: s.product_id, shop_id: s.shop_id, title: s.title, image: s.image, price_cents: s.price_cents, stock: s.stock }
}

function saleCard(v: FlashSaleView): FlashSaleCard {
  return {
    id: v.id,
    product_id: v.product_id,
    sku_id: v.sku_id,
    title: v.title,
    spec: v.spec,
    price_cents: v.price_cents,
    original_price_cents: v.original_price_cents,
    stock: v.stock,
    remaining: v.remaining,
    per_user_limit: v.per_user_limit,
    starts_at: v.starts_at,
    ends_at: v.ends_at,
  }
}

function couponCard(v: CouponView): CouponCard {
  return {
    id: v.id,
    shop_id: v.shop_id,
    title: v.title,
    threshold_cents: v.threshold_cents,
    discount_cents: v.discount_cents,
    valid_until: v.valid_until,
    remaining: Math.max(0, v.total_quota - v.claimed),
    per_user_limit: v.per_user_limit,
  }
}

function packetCard(v: RedPacketView): RedPacketCard {
  return {
    id: v.id,
    sender: { id: v.sender_id, name: v.sender_name },
    count: v.count,
    total_cents: v.total_cents,
    greeting: v.greeting,
    expires_at: v.expires_at,
  }
}

function bagCard(v: LuckyBagView): LuckyBagCard {
  return {
    id: v.id,
    prize: v.prize,
    winners: v.winners,
    task: v.task,
    keyword: v.keyword,
    watch_minutes: v.watch_minutes,
    draws_at: v.draws_at,
    commitment: v.commitment,
  }
}

/** "张*、李* 等 5 人刚刚下单" */
export function noticeText(buyers: string[], count: number): string {
  return t.commerce.notice.orders(buyers.join('、') || '*', count, buyers.length)
}

export function useRoomCommerce(live: LiveRoom, roomId: () => number) {
  const state = reactive<RoomCommerceState>(emptyState())
  /** Server time, ticking: what countdowns read. */
  const now = shallowRef(live.serverNow())
  let lastTick = now.value
  const ticker = setInterval(() => {
    now.value = live.serverNow()
    const elapsed = Math.max(0, now.value - lastTick)
    lastTick = now.value
    sweep()
    advanceWatch(elapsed)
  }, 250)

  const myId = () => live.me.value?.id ?? null
  const timers = new Set<ReturnType<typeof setTimeout>>()
  function later(fn: () => void, ms: number) {
    const id = setTimeout(() => {
      timers.delete(id)
      fn()
    }, ms)
    timers.add(id)
  }

  // ---------------------------------------------------------------- loading
  let generation = 0
  /** Events seen while a load is in flight, replayed on its answer. */
  let buffered: { ev: CommerceEvent; at: number }[] | null = null

  async function load() {
    const room = roomId()
    if (!room) return
    const mine = ++generation
    buffered = []
    state.loading = true
    try {
      const data = await commerceApi.roomCommerce(room)
      if (mine !== generation) return
      replace(data)
      const pending = buffered ?? []
      buffered = null
      for (const { ev, at } of pending) apply(ev, at, true)
      state.loaded = true
      state.error = null
    } catch (e) {
      if (mine !== generation) return
      buffered = null
      state.error = errorMessage(e)
    } finally {
      if (mine === generation) state.loading = false
    }
  }

  function replace(data: RoomCommerce) {
    const me = myId()
    state.shelf = data.shelf
    const pinned = data.shelf.find((s) => s.pinned) ?? data.shelf.find((s) => s.product_id === data.pinned)
    state.pinned = pinned ? shelfCard(pinned) : null
    const oldSales = new Map(state.sales.map((x) => [x.card.id, x]))
    state.sales = data.flash_sales.map((v) => ({
      card: saleCard(v),
      ended: null,
      busy: false,
      result: oldSales.get(v.id)?.result ?? null,
    }))
    const oldCoupons = new Map(state.coupons.map((x) => [x.card.id, x]))
    state.coupons = data.coupons.map((v) => ({
      card: couponCard(v),
      claimed: oldCoupons.get(v.id)?.claimed ?? 0,
      busy: false,
      error: null,
    }))
    const oldPackets = new Map(state.packets.map((x) => [x.card.id, x]))
    state.packets = data.red_packets.map((v) => {
      const g = v.grabs.find((x) => x.user_id === me)
      const old = oldPackets.get(v.id)
      return {
        card: packetCard(v),
        grabbed: g ? g.amount_cents : (old?.grabbed ?? null),
        refused: old?.refused ?? null,
        finished: v.status !== 'active',
        busy: false,
      }
    })
    const oldBags = new Map(state.bags.map((x) => [x.card.id, x]))
    const open = data.lucky_bags.map((v) => ({
      card: bagCard(v),
      startsAt: v.starts_at,
      joined: oldBags.get(v.id)?.joined ?? false,
      joining: false,
      drawn: null,
      watch: oldBags.get(v.id)?.watch ?? null,
    }))
    // A drawn bag still on screen stays until it is dismissed.
    const drawn = state.bags.filter((b) => b.drawn && !open.some((o) => o.card.id === b.card.id))
    state.bags = [...open, ...drawn]
  }

  // ---------------------------------------------------------------- events
  function upsertSale(card: FlashSaleCard) {
    const i = state.sales.findIndex((x) => x.card.id === card.id)
    if (i >= 0) state.sales[i]!.card = card
    else state.sales.unshift({ card, ended: null, busy: false, result: null })
  }

  function apply(ev: CommerceEvent, at: number, replay = false) {
    switch (ev.kind) {
      case 'product_pinned': {
        state.pinned = ev.product
        const item = state.shelf.find((s) => s.product_id === ev.product.id)
        for (const s of state.shelf) s.pinned = s.product_id === ev.product.id
        if (item) Object.assign(item, { title: ev.product.title, image: ev.product.image, price_cents: ev.product.price_cents, stock: ev.product.stock })
        else state.shelf.push({ product_id: ev.product.id, shop_id: ev.product.shop_id, title: ev.product.title, image: ev.product.image, price_cents: ev.product.price_cents, stock: ev.product.stock, pinned: true, videos: [] })
        break
      }
      case 'product_updated': {
        // Live price and stock (讲解中 card and cart): the server's card is exact.
        const { title, image, price_cents, stock } = ev.product
        const item = state.shelf.find((x) => x.product_id === ev.product.id)
        if (item) Object.assign(item, { title, image, price_cents, stock })
        if (state.pinned?.id === ev.product.id) state.pinned = { ...ev.product }
        break
      }
      case 'product_unpinned':
        if (state.pinned?.id === ev.product) state.pinned = null
        for (const s of state.shelf) if (s.product_id === ev.product) s.pinned = false
        break
      case 'flash_sale_started': {
        const known = state.sales.some((x) => x.card.id === ev.sale.id)
        upsertSale(ev.sale)
        // The sale's stock left the SKU: the product's cards show less.
        if (!known && !replay) {
          const item = state.shelf.find((x) => x.product_id === ev.sale.product_id)
          if (item) item.stock = Math.max(0, item.stock - ev.sale.stock)
          if (state.pinned?.id === ev.sale.product_id) state.pinned.stock = Math.max(0, state.pinned.stock - ev.sale.stock)
        }
        break
      }
      case 'flash_sale_stock': {
        const sale = state.sales.find((x) => x.card.id === ev.sale)
        if (sale) {
          sale.card.remaining = ev.remaining
          // Units of unpaid orders come back: 已售罄 was not final.
          if (ev.remaining > 0 && sale.result?.kind === 'sold_out') sale.result = null
        }
        break
      }
      case 'flash_sale_ended': {
        const sale = state.sales.find((x) => x.card.id === ev.sale)
        if (sale) {
          sale.ended = { sold: ev.sold }
          sale.card.remaining = Math.max(0, sale.card.stock - ev.sold)
          later(() => dropSale(ev.sale), LINGER_MS)
        }
        break
      }
      case 'coupon_offered': {
        const c = state.coupons.find((x) => x.card.id === ev.coupon.id)
        if (c) c.card = ev.coupon
        else state.coupons.unshift({ card: ev.coupon, claimed: 0, busy: false, error: null })
        break
      }
      case 'red_packet_sent': {
        if (state.packets.some((x) => x.card.id === ev.packet.id)) break
        state.packets.unshift({ card: ev.packet, grabbed: null, refused: null, finished: false, busy: false })
        // Everyone but the sender gets the popup (not for a replayed, older event).
        if (!replay && ev.packet.sender.id !== myId() && state.popup === null) state.popup = ev.packet.id
        break
      }
      case 'red_packet_finished': {
        const p = state.packets.find((x) => x.card.id === ev.packet)
        if (p) {
          p.finished = true
          later(() => dropPacket(ev.packet), LINGER_MS)
        }
        break
      }
      case 'lucky_bag_launched':
        if (!state.bags.some((x) => x.card.id === ev.bag.id)) {
          // A bag just launched: nobody has watched any of it yet, so there is nothing to ask;
          // the first fetch comes at a random moment of the poll interval, so the whole room
          // does not ask at once.
          const minutes = ev.bag.task === 'watch' ? ev.bag.watch_minutes : null
          const watch = minutes ? { shownMs: 0, requiredMs: minutes * 60_000, confirmed: false } : null
          if (watch) watchFetchedAt.set(ev.bag.id, now.value - Math.random() * WATCH_POLL_MS)
          state.bags.unshift({ card: ev.bag, startsAt: at, joined: false, joining: false, drawn: null, watch })
        }
        break
      case 'lucky_bag_drawn': {
        const b = state.bags.find((x) => x.card.id === ev.bag)
        if (b) b.drawn = { seed: ev.seed, entrants: ev.entrants, winners: ev.winners }
        break
      }
      case 'order_notice':
        if (replay) break
        state.notice = { key: at + Math.random(), text: noticeText(ev.buyers, ev.count), product: ev.product }
        {
          const key = state.notice.key
          later(() => {
            if (state.notice?.key === key) state.notice = null
          }, NOTICE_MS)
        }
        break
    }
  }

  function dropSale(id: number) {
    const i = state.sales.findIndex((x) => x.card.id === id)
    if (i < 0) return
    // A winner who has not paid yet keeps the card (and its pay button).
    const r = state.sales[i]!.result
    if (r?.kind === 'won' && r.order.status === 'pending_payment') return later(() => dropSale(id), LINGER_MS)
    state.sales.splice(i, 1)
  }
  function dropPacket(id: number) {
    if (state.popup === id) return later(() => dropPacket(id), LINGER_MS)
    const i = state.packets.findIndex((x) => x.card.id === id)
    if (i >= 0) state.packets.splice(i, 1)
  }
  /** Expired packets and coupons leave on their own. */
  function sweep() {
    const n = now.value
    for (let i = state.packets.length - 1; i >= 0; i--) {
      const p = state.packets[i]!
      if (p.card.expires_at + LINGER_MS < n && state.popup !== p.card.id) state.packets.splice(i, 1)
    }
    for (let i = state.coupons.length - 1; i >= 0; i--) {
      if (state.coupons[i]!.card.valid_until < n) state.coupons.splice(i, 1)
    }
  }

  // ---------------------------------------------------------------- watch bags
  /** Watch bags whose progress the server will not give me (I launched it, or host the room). */
  const noWatch = new Set<number>()
  const watchFetchedAt = new Map<number, number>()
  const watchFetching = new Set<number>()

  /** Watch time counts while the room is live and I am in it (the hub counts presence). */
  function watching(): boolean {
    return live.state.live && live.state.joined && live.state.connection === 'open'
  }

  function isOpenWatchBag(b: BagState, n: number): boolean {
    return b.card.task === 'watch' && !b.drawn && b.card.draws_at > n
  }

  async function fetchWatch(b: BagState) {
    const id = b.card.id
    watchFetching.add(id)
    // A little jitter, so a room's viewers do not all ask in the same second.
    watchFetchedAt.set(id, now.value + Math.random() * 2000)
    try {
      const v = await commerceApi.luckyBag(id)
      const current = state.bags.find((x) => x.card.id === id)
      if (!current) return
      if (!v.my_watch) {
        // The host (or the bag is drawn): nothing to show, nothing more to ask.
        if (v.status === 'open') noWatch.add(id)
        return
      }
      const server = v.my_watch.watched_ms
      const shown = current.watch?.shownMs ?? 0
      const keep = shown > server && shown - server < WATCH_LAG_MS
      current.watch = {
        shownMs: Math.min(v.my_watch.required_ms, keep ? shown : server),
        requiredMs: v.my_watch.required_ms,
        confirmed: server >= v.my_watch.required_ms,
      }
      if (current.watch.shownMs >= current.watch.requiredMs) current.joined = true
    } catch {
      // Progress is a courtesy: the next poll tries again.
    } finally {
      watchFetching.delete(id)
    }
  }

  /** Every tick: my watch bags advance while I watch, and are fetched again now and then. */
  function advanceWatch(elapsed: number) {
    const n = now.value
    const on = watching()
    for (const b of state.bags) {
      if (!isOpenWatchBag(b, n) || noWatch.has(b.card.id)) continue
      const w = b.watch
      if (w && on && w.shownMs < w.requiredMs) {
        w.shownMs = Math.min(w.requiredMs, w.shownMs + elapsed)
        if (w.shownMs >= w.requiredMs) b.joined = true
      }
      const last = watchFetchedAt.get(b.card.id)
      const due = last === undefined || n - last >= WATCH_POLL_MS
      if (due && !watchFetching.has(b.card.id) && !w?.confirmed) void fetchWatch(b)
    }
  }

  const offCommerce = live.onCommerce((ev, at) => {
    if (buffered) buffered.push({ ev, at })
    apply(ev, at)
  })
  const offSnapshot = live.onSnapshot(() => void load())

  // Entering another room on the same page starts over.
  watch(roomId, () => {
    generation++
    buffered = null
    noWatch.clear()
    watchFetchedAt.clear()
    Object.assign(state, emptyState())
  })

  // A lucky bag counts as joined once my comment with its keyword is in the chat.
  watch(
    () => live.state.chat.length,
    () => {
      const me = myId()
      if (me === null) return
      for (const b of state.bags) {
        if (b.joined || !b.card.keyword) continue
        const kw = b.card.keyword
        if (live.state.chat.some((m) => m.user.id === me && m.text.includes(kw) && m.at >= b.startsAt - 2000)) b.joined = true
      }
    },
  )

  onBeforeUnmount(() => {
    clearInterval(ticker)
    for (const id of timers) clearTimeout(id)
    offCommerce()
    offSnapshot()
  })

  // ---------------------------------------------------------------- viewer actions
  /** Idempotency keys of 马上抢 taps whose answer never came: the retry reuses them. */
  const flashKeys = new Map<number, string>()

  async function grabFlash(sale: FlashSaleState): Promise<FlashResult> {
    if (sale.busy) return sale.result ?? { kind: 'error', message: '' }
    const id = sale.card.id
    const key = flashKeys.get(id) ?? newIdempotencyKey()
    flashKeys.set(id, key)
    sale.busy = true
    let result: FlashResult
    try {
      const order = await commerceApi.flashOrder(id, key)
      flashKeys.delete(id)
      result = { kind: 'won', order }
    } catch (e) {
      const message = errorMessage(e)
      if (isApiError(e) && e.status > 0 && e.status < 500) {
        flashKeys.delete(id)
        const kind =
          e.code === 'sold_out'
            ? 'sold_out'
            : e.code === 'limit_reached'
              ? 'limit'
              : e.code === 'sale_not_open'
                ? 'not_open'
                : e.code === 'sale_ended'
                  ? 'ended'
                  : 'error'
        result = { kind, message }
        if (kind === 'sold_out') sale.card.remaining = 0
      } else {
        result = { kind: 'retry', message }
      }
    } finally {
      sale.busy = false
    }
    sale.result = result
    return result
  }

  async function grabPacket(p: PacketState) {
    if (p.busy || p.grabbed !== null) return
    p.busy = true
    try {
      const r = await commerceApi.grabRedPacket(p.card.id)
      p.grabbed = r.amount_cents
      p.refused = null
    } catch (e) {
      if (isApiError(e) && e.status > 0 && e.status < 500) {
        p.refused = errorMessage(e)
        if (e.code === 'red_packet_empty' || e.code === 'red_packet_expired') p.finished = true
      } else {
        // No answer: the button stays, so the viewer can tap again.
        live.toast(errorMessage(e))
      }
    } finally {
      p.busy = false
    }
  }

  async function claimCoupon(c: CouponState) {
    if (c.busy) return
    c.busy = true
    c.error = null
    try {
      const claim = await commerceApi.claimCoupon(c.card.id)
      c.claimed++
      c.card.remaining = Math.max(0, claim.coupon.total_quota - claim.coupon.claimed)
      live.toast(t.commerce.coupon.claimedToast, 'info')
    } catch (e) {
      c.error = errorMessage(e)
      live.toast(c.error)
    } finally {
      c.busy = false
    }
  }

  async function joinBag(b: BagState) {
    if (!b.card.keyword || b.joining) return
    b.joining = true
    try {
      await live.sendChat(b.card.keyword)
      b.joined = true
      live.toast(t.commerce.bag.joinedToast, 'info')
    } catch (e) {
      live.toast(e instanceof Error && e.message ? e.message : t.errors.unknown)
    } finally {
      b.joining = false
    }
  }

  function dismissBag(id: number) {
    const i = state.bags.findIndex((x) => x.card.id === id)
    if (i >= 0) state.bags.splice(i, 1)
  }

  /** A fresh full state from a tool's answer (adding to the shelf answers with it). */
  function adopt(data: RoomCommerce) {
    replace(data)
    state.loaded = true
  }

  return { state, now, load, adopt, grabFlash, grabPacket, claimCoupon, joinBag, dismissBag, myId }
}
