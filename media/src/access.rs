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

#[async_trait::async_trait]
pub trait RoomAccess: Send + Sync + 'static {
    /// `Ok` when `principal` may do `intent` in `room`; otherwise the error to answer with
    /// (404 for a room they cannot see, 403 for one they may see but not publish to).
    async fn authorize(
        &self,
        principal: &Principal,
        room: i64,
        intent: Intent,
    ) -> Result<(), ApiError>;
}
