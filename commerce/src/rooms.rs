//! What commerce needs from the live-room hub, as a trait so this crate does not depend on how
//! rooms run: who someone is in a room, and announcing an event there. The binary implements it
//! over `signaling::Hub`.

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
    pub peak: u32,
    pub likes: u64,
}

#[async_trait::async_trait]
pub trait LiveRooms: Send + Sync {
    /// The counters of `room` if it runs on this node now.
    async fn counts(&self, room: i64) -> Option<LiveCounts>;
    /// `principal`'s role in `room`; not found when they may not enter it.
    async fn access(&self, principal: &Principal, room: i64) -> Result<RoomAccess, ApiError>;
    /// Announce `event` to everyone in `room`, on every node.
    async fn announce(&self, room: i64, event: CommerceEvent);
}
