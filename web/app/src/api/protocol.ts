// The hub protocol, generated from signaling/src/protocol.rs — do not edit.
// Regenerate: UPDATE_PROTOCOL_TS=1 cargo test -p signaling typescript_bindings

/**
 * A frame from a client.
 */
export type ClientFrame = { 
/**
 * Protocol version; must be 1.
 */
v: number, 
/**
 * Optional correlation id, echoed in the `ack` / `error` answering this frame.
 */
id?: number, } & ({ "type": "join", room: number, last_seq?: number, } | { "type": "leave", room: number, } | { "type": "chat", room: number, text: string, } | { "type": "like", room: number, count: number, } | { "type": "start_live", room: number, } | { "type": "end_live", room: number, } | { "type": "mute", room: number, user: number, minutes: number, } | { "type": "unmute", room: number, user: number, } | { "type": "remove_message", room: number, message: number, } | { "type": "pin_message", room: number, message: number, } | { "type": "unpin_message", room: number, } | { "type": "ping" });

/**
 * What a client asks for.
 */
export type ClientMsg = { "type": "join", room: number, last_seq?: number, } | { "type": "leave", room: number, } | { "type": "chat", room: number, text: string, } | { "type": "like", room: number, count: number, } | { "type": "start_live", room: number, } | { "type": "end_live", room: number, } | { "type": "mute", room: number, user: number, minutes: number, } | { "type": "unmute", room: number, user: number, } | { "type": "remove_message", room: number, message: number, } | { "type": "pin_message", room: number, message: number, } | { "type": "unpin_message", room: number, } | { "type": "ping" };

/**
 * A person as shown in a room.
 */
export type UserRef = { id: number, name: string, };

/**
 * Why someone is in a room; decides what they may do there.
 */
export type MemberRole = "host" | "instructor" | "supervisor" | "viewer";

/**
 * A chat message as shown.
 */
export type ChatMessage = { 
/**
 * The `seq` of the event that carried it; used to remove or pin it.
 */
id: number, user: UserRef, role: MemberRole, text: string, 
/**
 * Unix milliseconds.
 */
at: number, };

export type MediaTrack = { 
/**
 * `audio` or `video`.
 */
kind: string, 
/**
 * MIME type, e.g. `video/VP8`.
 */
codec: string, 
/**
 * Simulcast layers (1 without simulcast); WHEP's `layer=low|medium|high` picks one.
 */
layers: number, };

/**
 * In which capacity someone publishes.
 */
export type PublisherRole = "main" | "guest";

/**
 * What one publisher sends: play it with WHEP (`POST /whep/{room}?publisher={id}`,
 * docs/media.md).
 */
export type RoomMedia = { publisher: number, tracks: Array<MediaTrack>, role: PublisherRole, };

/**
 * A product as its card shows it in the room (讲解中 / 小黄车).
 */
export type ProductCard = { id: number, shop_id: number, title: string, image: string | null, 
/**
 * The lowest SKU price.
 */
price_cents: number, 
/**
 * Stock over all SKUs.
 */
stock: number, };

/**
 * A flash sale (秒杀) as the room shows it.
 */
export type FlashSaleCard = { id: number, product_id: number, sku_id: number, title: string, spec: string, price_cents: number, original_price_cents: number, stock: number, remaining: number, per_user_limit: number, 
/**
 * Unix milliseconds.
 */
starts_at: number, ends_at: number, };

/**
 * A coupon (优惠券) offered in the room.
 */
export type CouponCard = { id: number, shop_id: number, title: string, 
/**
 * 0: no threshold.
 */
threshold_cents: number, discount_cents: number, valid_until: number, remaining: number, per_user_limit: number, };

/**
 * A red packet (红包) sent in the room; grab it with `POST /api/v1/red-packets/{id}/grab`.
 */
export type RedPacketCard = { id: number, sender: UserRef, count: number, total_cents: number, greeting: string, expires_at: number, };

/**
 * A lucky bag (福袋): enter by its task before `draws_at`; the draw is recomputable from the
 * seed revealed afterwards (its SHA-256 is `commitment`).
 */
export type LuckyBagCard = { id: number, prize: string, winners: number, 
/**
 * `comment`: send `keyword` in the chat; `watch`: watch the live for `watch_minutes`
 * during the countdown.
 */
task: string, keyword: string | null, 
/**
 * Minutes to watch (task `watch`); null for comment bags.
 */
watch_minutes: number | null, draws_at: number, commitment: string, };

/**
 * What the selling tools announce in a room.
 */
export type CommerceEvent = { "kind": "product_pinned", product: ProductCard, } | { "kind": "product_unpinned", product: number, } | { "kind": "product_updated", product: ProductCard, } | { "kind": "flash_sale_started", sale: FlashSaleCard, } | { "kind": "flash_sale_stock", sale: number, remaining: number, } | { "kind": "flash_sale_ended", sale: number, sold: number, } | { "kind": "coupon_offered", coupon: CouponCard, } | { "kind": "red_packet_sent", packet: RedPacketCard, } | { "kind": "red_packet_finished", packet: number, grabbed: number, returned_cents: number, } | { "kind": "lucky_bag_launched", bag: LuckyBagCard, } | { "kind": "lucky_bag_drawn", bag: number, 
/**
 * The seed, hex; SHA-256 of its bytes is the launch's commitment.
 */
seed: string, entrants: number, winners: Array<UserRef>, } | { "kind": "order_notice", buyers: Array<string>, count: number, product: string, };

/**
 * Something that happened in a room, in order.
 */
export type RoomEvent = { "kind": "live_started", host: UserRef, } | { "kind": "live_ended", peak: number, likes: number, } | { "kind": "chat", message: ChatMessage, } | { "kind": "message_removed", message: number, by: UserRef, } | { "kind": "message_pinned", message: ChatMessage, } | { "kind": "message_unpinned" } | { "kind": "user_muted", user: number, until: number, } | { "kind": "user_unmuted", user: number, } | { "kind": "media_changed", media: RoomMedia | null, publishers: Array<RoomMedia>, } | { "kind": "stage_changed", stage: Array<UserRef>, } | { "kind": "member_joined", user: UserRef, role: MemberRole, } | { "kind": "member_left", user: UserRef, } | { "kind": "commerce", event: CommerceEvent, };

/**
 * The state of a room as a newcomer (or a client that missed too much) needs it.
 */
export type RoomSnapshot = { live: boolean, 
/**
 * The last event's seq; events after it follow this snapshot.
 */
seq: number, viewers: number, peak: number, likes: number, host: UserRef | null, pinned: ChatMessage | null, 
/**
 * The latest chat messages, oldest first.
 */
recent_chat: Array<ChatMessage>, 
/**
 * Everyone present, for small rooms; `null` for large ones.
 */
members: Array<UserRef> | null, 
/**
 * The main publisher now, if any.
 */
media: RoomMedia | null, 
/**
 * Everyone publishing now, main first.
 */
publishers: Array<RoomMedia>, };

/**
 * A frame from the server.
 */
export type ServerMsg = { "type": "welcome", v: number, user: UserRef, server_time: number, } | { "type": "joined", room: number, role: MemberRole, state: RoomSnapshot, } | { "type": "resumed", room: number, role: MemberRole, from_seq: number, } | { "type": "resync", room: number, role: MemberRole, state: RoomSnapshot, } | { "type": "event", room: number, seq: number, at: number, event: RoomEvent, } | { "type": "stats", room: number, viewers: number, peak: number, likes: number, } | { "type": "left", room: number, } | { "type": "ack", id: number, } | { "type": "error", id?: number, code: string, message: string, } | { "type": "pong", server_time: number, };
