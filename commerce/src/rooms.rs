//! What commerce needs from the live-room hub, as a trait so this crate does not depend on how
//! rooms run: who someone is in a room, announcing an event there, and (for buyer bots) being in
//! a room as an in-process viewer. The binary implements it over `signaling::Hub`.

use foundation::ApiError;
use foundation::identity::Principal;
use signaling::protocol::{CommerceEvent, MemberRole};

/// Someone's place in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomAccess {
    pub role: MemberRole,
    pub class_id: i64,
}

impl RoomAccess {
    /// Hosts run the selling tools; in a live class so do its instructors.
    pub fn runs_tools(&self) -> bool {
        self.role.moderates()
    }
}

/// A running room's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveCounts {
    pub live: bool,
    pub viewers: u32,
    /// The current live's peak (not the room's over all its lives).
    pub peak: u32,
    /// The current live's likes (not the room's over all its lives).
    pub likes: u64,
}

/// Someone in a room without a socket (a buyer bot): a viewer like any other, whose likes and
/// chat meet the room's rules. Dropping it leaves the room.
#[async_trait::async_trait]
pub trait RoomPresence: Send + Sync {
    /// A chat message (rate limit, word filter, storage as for a person); false when gone.
    async fn chat(&self, text: String) -> bool;
    /// `taps` likes (1–500); false when gone.
    async fn like(&self, taps: u32) -> bool;
    /// Whether the room or the hub closed it.
    fn is_closed(&self) -> bool;
    async fn leave(self: Box<Self>);
}

#[async_trait::async_trait]
pub trait LiveRooms: Send + Sync {
    /// The counters of `room` if it runs on this node now.
    async fn counts(&self, room: i64) -> Option<LiveCounts>;
    /// `principal`'s role in `room`; not found when they may not enter it.
    async fn access(&self, principal: &Principal, room: i64) -> Result<RoomAccess, ApiError>;
    /// Announce `event` to everyone in `room`, on every node.
    async fn announce(&self, room: i64, event: CommerceEvent);
    /// Enter `room` as `principal` without a socket, with the role a `join` would give.
    async fn enter(
        &self,
        principal: &Principal,
        room: i64,
    ) -> Result<Box<dyn RoomPresence>, ApiError>;
}
