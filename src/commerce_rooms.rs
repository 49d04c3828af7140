//! The hub as commerce sees it: who someone is in a room, and announcing the selling tools'
//! events there.

use std::sync::Arc;

use commerce::{LiveCounts, LiveRooms, RoomAccess};
use foundation::ApiError;
use foundation::identity::Principal;
use signaling::protocol::{CommerceEvent, RoomEvent};

pub(crate) struct HubRooms(pub Arc<signaling::Hub>);

#[async_trait::async_trait]
impl LiveRooms for HubRooms {
    async fn access(&self, principal: &Principal, room: i64) -> Result<RoomAccess, ApiError> {
        let (role, _kind, class_id) = self.0.member_role(principal, room).await?;
        Ok(RoomAccess { role, class_id })
    }

    async fn counts(&self, room: i64) -> Option<LiveCounts> {
        let c = self.0.live_counts(room).await?;
        Some(LiveCounts {
            live: c.live,
            viewers: c.viewers,
            peak: c.peak,
            likes: c.likes,
        })
    }

    async fn announce(&self, room: i64, event: CommerceEvent) {
        self.0.announce(room, RoomEvent::Commerce { event }).await;
    }
}
