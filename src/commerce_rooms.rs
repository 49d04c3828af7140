//! The hub as commerce sees it: who someone is in a room, announcing the selling tools' events
//! there, and buyer bots in a room as the hub's virtual connections.

use std::sync::Arc;

use commerce::{LiveCounts, LiveRooms, RoomAccess, RoomPresence};
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

    async fn enter(
        &self,
        principal: &Principal,
        room: i64,
    ) -> Result<Box<dyn RoomPresence>, ApiError> {
        let conn = self.0.join_virtual(principal, room).await?;
        Ok(Box::new(HubPresence(conn)))
    }
}

/// A virtual connection of the hub, as commerce's [`RoomPresence`].
struct HubPresence(signaling::VirtualConn);

#[async_trait::async_trait]
impl RoomPresence for HubPresence {
    async fn chat(&self, text: String) -> bool {
        self.0.chat(text).await
    }

    async fn like(&self, taps: u32) -> bool {
        self.0.like(taps).await
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    async fn leave(self: Box<Self>) {
        self.0.leave().await;
    }
}
