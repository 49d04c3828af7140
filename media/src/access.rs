//! Who may publish or play in a room: decided by the room's owner (the hub knows hosts, classes
//! and instructors), asked through this trait so the media crate does not depend on it.

use foundation::ApiError;
use foundation::identity::Principal;

/// What a WHIP or WHEP request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Send media into the room (WHIP).
    Publish,
    /// Receive the room's media (WHEP).
    Play,
}

/// What the media crate needs to know of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomInfo {
    pub class_id: i64,
    /// Live classes are always recorded; other rooms when the host asks for it.
    pub always_recorded: bool,
    /// For [`Intent::Publish`]: as the room's main publisher or as a guest.
    pub publish_as: crate::PublishAs,
}

/// How a stream key begins: a Bearer token with this prefix on `POST /whip/{room}` or
/// `DELETE /whip/{room}/{session}` is a room's stream key (for OBS Studio), asked about through
/// [`RoomAccess::stream_key_principal`], never a session token. The same as the prefix of the
/// keys the implementation issues (`signaling::stream_keys::KEY_PREFIX`).
pub const STREAM_KEY_PREFIX: &str = "lcsk_";

#[async_trait::async_trait]
pub trait RoomAccess: Send + Sync + 'static {
    /// The room, when `principal` may do `intent` in it; otherwise the error to answer with
    /// (404 for a room they cannot see, 403 for one they may see but not publish to).
    async fn authorize(
        &self,
        principal: &Principal,
        room: i64,
        intent: Intent,
    ) -> Result<RoomInfo, ApiError>;

    /// The account `key` publishes as, when it is `room`'s active stream key (its use is
    /// noted); `None` for any other key, the key of another room included. A key only ever
    /// stands for its account on WHIP: [`RoomAccess::authorize`] still decides whether that
    /// account may publish.
    async fn stream_key_principal(
        &self,
        room: i64,
        key: &str,
    ) -> Result<Option<Principal>, ApiError>;

    /// Whether `principal` may see `class` (its replays).
    async fn class_visible(&self, principal: &Principal, class: i64) -> Result<bool, ApiError>;
}
