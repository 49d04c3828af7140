//! The hub's wire protocol, version 1: JSON text frames over one WebSocket per client.
//!
//! This module is the one definition of the protocol. The server uses it directly, `loadtest`
//! links it, and the web app's `src/api/protocol.ts` is generated from it by ts-rs (a test fails
//! when the committed file is stale). docs/protocol.md explains every message with examples.
//!
//! Client frames are `{"v": 1, "id": 7, "type": "chat", ...}`; `id` is optional and echoed in
//! the `ack` or `error` that answers the frame. Every room event carries a per-room sequence
//! number so a reconnecting client can ask for what it missed.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub const PROTOCOL_VERSION: u8 = 1;

pub type RoomId = i64;
pub type UserId = i64;
/// Per-room event sequence number: grows by one per event. A room (re)loaded starts at its load
/// time in milliseconds × 1000, so numbers never repeat across restarts (and stay below 2^53).
pub type Seq = u64;

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ClientFrame {
    /// Protocol version; must be 1.
    pub v: u8,
    /// Optional correlation id, echoed in the `ack` / `error` answering this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub id: Option<u32>,
    #[serde(flatten)]
    pub msg: ClientMsg,
}

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Enter a room; with `last_seq`, resume after a reconnect.
    Join {
        room: RoomId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        last_seq: Option<Seq>,
    },
    Leave {
        room: RoomId,
    },
    /// A danmaku / chat message (1–200 characters).
    Chat {
        room: RoomId,
        text: String,
    },
    /// Taps batched by the client since its last `like` (1–500).
    Like {
        room: RoomId,
        count: u32,
    },
    /// Host: go live.
    StartLive {
        room: RoomId,
    },
    /// Host: end the live.
    EndLive {
        room: RoomId,
    },
    /// Host: silence a viewer for some minutes (1–1440).
    Mute {
        room: RoomId,
        user: UserId,
        minutes: u32,
    },
    Unmute {
        room: RoomId,
        user: UserId,
    },
    /// Host: take a chat message down (by its event `seq`).
    RemoveMessage {
        room: RoomId,
        message: Seq,
    },
    /// Host: pin a chat message (by its event `seq`).
    PinMessage {
        room: RoomId,
        message: Seq,
    },
    UnpinMessage {
        room: RoomId,
    },
    Ping,
}

impl ClientMsg {
    /// The room a message is about, if any.
    pub fn room(&self) -> Option<RoomId> {
        match self {
            ClientMsg::Join { room, .. }
            | ClientMsg::Leave { room }
            | ClientMsg::Chat { room, .. }
            | ClientMsg::Like { room, .. }
            | ClientMsg::StartLive { room }
            | ClientMsg::EndLive { room }
            | ClientMsg::Mute { room, .. }
            | ClientMsg::Unmute { room, .. }
            | ClientMsg::RemoveMessage { room, .. }
            | ClientMsg::PinMessage { room, .. }
            | ClientMsg::UnpinMessage { room } => Some(*room),
            ClientMsg::Ping => None,
        }
    }
}

/// A person as shown in a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
pub struct UserRef {
    pub id: UserId,
    pub name: String,
}

/// Why someone is in a room; decides what they may do there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// The room's host (trainee host or teaching instructor): moderates, starts and ends.
    Host,
    /// An instructor of the class who is not the host: may moderate.
    Instructor,
    /// A supervisor or administrator watching.
    Supervisor,
    Viewer,
}

impl MemberRole {
    pub fn moderates(self) -> bool {
        matches!(self, MemberRole::Host | MemberRole::Instructor)
    }
}

/// A chat message as shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ChatMessage {
    /// The `seq` of the event that carried it; used to remove or pin it.
    pub id: Seq,
    pub user: UserRef,
    pub role: MemberRole,
    pub text: String,
    /// Unix milliseconds.
    #[ts(type = "number")]
    pub at: i64,
}

/// Something that happened in a room, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    LiveStarted {
        host: UserRef,
    },
    LiveEnded {
        peak: u32,
        likes: u64,
    },
    Chat {
        message: ChatMessage,
    },
    MessageRemoved {
        message: Seq,
        by: UserRef,
    },
    MessagePinned {
        message: ChatMessage,
    },
    MessageUnpinned,
    UserMuted {
        user: UserId,
        #[ts(type = "number")]
        until: i64,
    },
    UserUnmuted {
        user: UserId,
    },
    /// Someone started or stopped publishing audio and video. `media` is the main publisher
    /// (the host, or the class's instructor; `null`: none), `publishers` everyone publishing,
    /// main first, then guests (trainees on stage, a proctoring room's examinees) as they came.
    MediaChanged {
        media: Option<RoomMedia>,
        #[serde(default)]
        publishers: Vec<RoomMedia>,
    },
    /// Who is invited on the stage of a live class (they may publish as guests), oldest first.
    StageChanged {
        stage: Vec<UserRef>,
    },
    /// Presence in small rooms (large rooms only report counts).
    MemberJoined {
        user: UserRef,
        role: MemberRole,
    },
    MemberLeft {
        user: UserRef,
    },
    /// The room's selling tools: product cards, flash sales, coupons, red packets, lucky bags,
    /// order notices (commerce crate). Never dropped.
    Commerce {
        event: CommerceEvent,
    },
}

/// A product as its card shows it in the room (讲解中 / 小黄车).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ProductCard {
    pub id: i64,
    pub shop_id: i64,
    pub title: String,
    pub image: Option<String>,
    /// The lowest SKU price.
    #[ts(type = "number")]
    pub price_cents: i64,
    /// Stock over all SKUs.
    #[ts(type = "number")]
    pub stock: i64,
}

/// A flash sale (秒杀) as the room shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct FlashSaleCard {
    pub id: i64,
    pub product_id: i64,
    pub sku_id: i64,
    pub title: String,
    pub spec: String,
    #[ts(type = "number")]
    pub price_cents: i64,
    #[ts(type = "number")]
    pub original_price_cents: i64,
    pub stock: u32,
    pub remaining: u32,
    pub per_user_limit: u32,
    /// Unix milliseconds.
    #[ts(type = "number")]
    pub starts_at: i64,
    #[ts(type = "number")]
    pub ends_at: i64,
}

/// A coupon (优惠券) offered in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct CouponCard {
    pub id: i64,
    pub shop_id: i64,
    pub title: String,
    /// 0: no threshold.
    #[ts(type = "number")]
    pub threshold_cents: i64,
    #[ts(type = "number")]
    pub discount_cents: i64,
    #[ts(type = "number")]
    pub valid_until: i64,
    pub remaining: u32,
    pub per_user_limit: u32,
}

/// A red packet (红包) sent in the room; grab it with `POST /api/v1/red-packets/{id}/grab`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RedPacketCard {
    pub id: i64,
    pub sender: UserRef,
    pub count: u32,
    #[ts(type = "number")]
    pub total_cents: i64,
    pub greeting: String,
    #[ts(type = "number")]
    pub expires_at: i64,
}

/// A lucky bag (福袋): enter by its task before `draws_at`; the draw is recomputable from the
/// seed revealed afterwards (its SHA-256 is `commitment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct LuckyBagCard {
    pub id: i64,
    pub prize: String,
    pub winners: u32,
    /// `comment`: send `keyword` in the chat; `watch`: watch the live for `watch_minutes`
    /// during the countdown.
    pub task: String,
    pub keyword: Option<String>,
    /// Minutes to watch (task `watch`); null for comment bags.
    pub watch_minutes: Option<u32>,
    #[ts(type = "number")]
    pub draws_at: i64,
    pub commitment: String,
}

/// What the selling tools announce in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommerceEvent {
    ProductPinned {
        product: ProductCard,
    },
    ProductUnpinned {
        product: i64,
    },
    /// The live price or stock of a product on the room's shelf changed (pinned or not);
    /// batched, at most twice a second per product.
    ProductUpdated {
        product: ProductCard,
    },
    FlashSaleStarted {
        sale: FlashSaleCard,
    },
    /// Stock left, a few times per second at most while it changes.
    FlashSaleStock {
        sale: i64,
        remaining: u32,
    },
    FlashSaleEnded {
        sale: i64,
        sold: u32,
    },
    CouponOffered {
        coupon: CouponCard,
    },
    RedPacketSent {
        packet: RedPacketCard,
    },
    /// All shares taken, or expired (the rest went back to the sender).
    RedPacketFinished {
        packet: i64,
        grabbed: u32,
        #[ts(type = "number")]
        returned_cents: i64,
    },
    LuckyBagLaunched {
        bag: LuckyBagCard,
    },
    LuckyBagDrawn {
        bag: i64,
        /// The seed, hex; SHA-256 of its bytes is the launch's commitment.
        seed: String,
        entrants: u32,
        winners: Vec<UserRef>,
    },
    /// Recent orders of the room, batched: a few names (masked) and how many in all.
    OrderNotice {
        buyers: Vec<String>,
        count: u32,
        product: String,
    },
}

/// Delivery class of an event under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Never dropped: live start/end, moderation, commerce and teaching events.
    System,
    /// Sampled per viewer when the room is busy: chat and presence.
    Chat,
}

impl RoomEvent {
    pub fn priority(&self) -> Priority {
        match self {
            RoomEvent::Chat { .. }
            | RoomEvent::MemberJoined { .. }
            | RoomEvent::MemberLeft { .. } => Priority::Chat,
            _ => Priority::System,
        }
    }
}

/// What one publisher sends: play it with WHEP (`POST /whep/{room}?publisher={id}`,
/// docs/media.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RoomMedia {
    pub publisher: UserId,
    pub tracks: Vec<MediaTrack>,
    #[serde(default)]
    pub role: PublisherRole,
}

/// In which capacity someone publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum PublisherRole {
    /// The host, or a live class's instructor.
    #[default]
    Main,
    /// A trainee on stage, or an examinee's webcam.
    Guest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct MediaTrack {
    /// `audio` or `video`.
    pub kind: String,
    /// MIME type, e.g. `video/VP8`.
    pub codec: String,
    /// Simulcast layers (1 without simulcast); WHEP's `layer=low|medium|high` picks one.
    #[serde(default = "one_layer")]
    pub layers: u8,
}

fn one_layer() -> u8 {
    1
}

/// The state of a room as a newcomer (or a client that missed too much) needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct RoomSnapshot {
    pub live: bool,
    /// The last event's seq; events after it follow this snapshot.
    #[ts(type = "number")]
    pub seq: Seq,
    pub viewers: u32,
    pub peak: u32,
    #[ts(type = "number")]
    pub likes: u64,
    pub host: Option<UserRef>,
    pub pinned: Option<ChatMessage>,
    /// The latest chat messages, oldest first.
    pub recent_chat: Vec<ChatMessage>,
    /// Everyone present, for small rooms; `null` for large ones.
    pub members: Option<Vec<UserRef>>,
    /// The main publisher now, if any.
    pub media: Option<RoomMedia>,
    /// Everyone publishing now, main first.
    #[serde(default)]
    pub publishers: Vec<RoomMedia>,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First frame after the upgrade.
    Welcome {
        v: u8,
        user: UserRef,
        #[ts(type = "number")]
        server_time: i64,
    },
    /// Answer to `join` without `last_seq` (or when resuming is impossible see `resync`).
    Joined {
        room: RoomId,
        role: MemberRole,
        state: RoomSnapshot,
    },
    /// Answer to `join` with `last_seq` when the missed events are still known: they follow
    /// as ordinary `event` frames.
    Resumed {
        room: RoomId,
        role: MemberRole,
        #[ts(type = "number")]
        from_seq: Seq,
    },
    /// The missed events are no longer kept: start over from this snapshot.
    Resync {
        room: RoomId,
        role: MemberRole,
        state: RoomSnapshot,
    },
    Event {
        room: RoomId,
        #[ts(type = "number")]
        seq: Seq,
        #[ts(type = "number")]
        at: i64,
        event: RoomEvent,
    },
    /// Counters, a few times per second at most while they change.
    Stats {
        room: RoomId,
        viewers: u32,
        peak: u32,
        #[ts(type = "number")]
        likes: u64,
    },
    Left {
        room: RoomId,
    },
    Ack {
        id: u32,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        id: Option<u32>,
        code: String,
        message: String,
    },
    Pong {
        #[ts(type = "number")]
        server_time: i64,
    },
}

/// WebSocket close codes the hub uses (4000–4999 are application codes).
pub mod close {
    /// The client fell too far behind; reconnect with `last_seq`.
    pub const TOO_SLOW: u16 = 4008;
    /// The session ended (logged in elsewhere, logged out, expired).
    pub const SESSION_ENDED: u16 = 4001;
    /// Too many protocol errors in a row.
    pub const PROTOCOL_ERROR: u16 = 4002;
    /// The server is shutting down; reconnect to another node.
    pub const GOING_AWAY: u16 = 1001;
}

/// The TypeScript declarations of the protocol, as committed in the web app.
pub fn typescript_bindings() -> String {
    // Ids and sequence numbers stay below 2^53, so JavaScript numbers hold them exactly.
    let cfg = ts_rs::Config::new().with_large_int("number");
    let mut out = String::from(
        "// The hub protocol, generated from signaling/src/protocol.rs — do not edit.\n\
         // Regenerate: UPDATE_PROTOCOL_TS=1 cargo test -p signaling typescript_bindings\n\n",
    );
    macro_rules! declare {
        ($($t:ty),* $(,)?) => {$(
            if let Some(docs) = <$t as TS>::docs() {
                out.push_str(&docs);
            }
            out.push_str("export ");
            out.push_str(&<$t as TS>::decl(&cfg));
            out.push_str("\n\n");
        )*};
    }
    declare!(
        ClientFrame,
        ClientMsg,
        UserRef,
        MemberRole,
        ChatMessage,
        MediaTrack,
        PublisherRole,
        RoomMedia,
        ProductCard,
        FlashSaleCard,
        CouponCard,
        RedPacketCard,
        LuckyBagCard,
        CommerceEvent,
        RoomEvent,
        RoomSnapshot,
        ServerMsg
    );
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typescript_bindings_are_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../web/app/src/api/protocol.ts"
        );
        let generated = typescript_bindings();
        if std::env::var_os("UPDATE_PROTOCOL_TS").is_some() {
            std::fs::write(path, &generated).expect("write protocol.ts");
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "web/app/src/api/protocol.ts is stale: run `UPDATE_PROTOCOL_TS=1 cargo test -p signaling typescript_bindings`"
        );
    }

    #[test]
    fn client_frames_round_trip() {
        let text = r#"{"v":1,"id":7,"type":"chat","room":3,"text":"你好"}"#;
        let frame: ClientFrame = serde_json::from_str(text).unwrap();
        assert_eq!(frame.id, Some(7));
        assert_eq!(
            frame.msg,
            ClientMsg::Chat {
                room: 3,
                text: "你好".into()
            }
        );
        let back = serde_json::to_string(&frame).unwrap();
        assert_eq!(serde_json::from_str::<ClientFrame>(&back).unwrap(), frame);
        let join: ClientFrame =
            serde_json::from_str(r#"{"v":1,"type":"join","room":3,"last_seq":42}"#).unwrap();
        assert_eq!(
            join.msg,
            ClientMsg::Join {
                room: 3,
                last_seq: Some(42)
            }
        );
    }

    #[test]
    fn server_events_are_tagged() {
        let msg = ServerMsg::Event {
            room: 1,
            seq: 5,
            at: 1000,
            event: RoomEvent::MessageUnpinned,
        };
        let text = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            text,
            r#"{"type":"event","room":1,"seq":5,"at":1000,"event":{"kind":"message_unpinned"}}"#
        );
    }

    #[test]
    fn unknown_types_fail_to_parse() {
        assert!(serde_json::from_str::<ClientFrame>(r#"{"v":1,"type":"explode"}"#).is_err());
        assert!(
            serde_json::from_str::<ClientFrame>(r#"{"v":1,"type":"chat","room":"x","text":"a"}"#)
                .is_err()
        );
    }
}
