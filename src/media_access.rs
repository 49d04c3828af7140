//! The media endpoint and the hub, joined: who may publish and play, answered from the hub's
//! room records (the host publishes; in a live class the class's instructors may too; everyone
//! who may enter the room may play), and the endpoint's publishing news announced in the room.

use std::sync::Arc;

use foundation::identity::Principal;
use foundation::{ApiError, ErrorCode};
use media::MediaEvent;
use media::{Intent, RoomAccess, RoomInfo};
use signaling::protocol::{MediaTrack, MemberRole, RoomMedia};
use signaling::store::RoomKind;
use tokio::sync::broadcast;

pub(crate) struct HubAccess(pub Arc<signaling::Hub>);

#[async_trait::async_trait]
impl RoomAccess for HubAccess {
    async fn authorize(
        &self,
        principal: &Principal,
        room: i64,
        intent: Intent,
    ) -> Result<RoomInfo, ApiError> {
        let (role, kind, class_id) = self.0.member_role(principal, room).await?;
        let may_publish = role == MemberRole::Host
            || (role == MemberRole::Instructor && kind == RoomKind::LiveClass);
        let info = RoomInfo {
            class_id,
            always_recorded: kind == RoomKind::LiveClass,
        };
        match intent {
            Intent::Play => Ok(info),
            Intent::Publish if may_publish => Ok(info),
            Intent::Publish => Err(ApiError::with_message(
                ErrorCode::Forbidden,
                "只有主播（直播课中也包括本班讲师）可以推流",
            )),
        }
    }

    async fn class_visible(&self, principal: &Principal, class: i64) -> Result<bool, ApiError> {
        self.0.class_visible(principal, class).await
    }
}

/// Announces every publish and unpublish of the media endpoint in its room (a system event, so
/// every viewer learns it, in order, on every node).
pub(crate) async fn announce(
    mut events: broadcast::Receiver<MediaEvent>,
    hub: Arc<signaling::Hub>,
) {
    loop {
        let (room, media) = match events.recv().await {
            Ok(MediaEvent::Publishing { room, user, tracks }) => {
                let tracks = tracks
                    .into_iter()
                    .map(|t| MediaTrack {
                        kind: t.kind.to_owned(),
                        codec: t.codec,
                    })
                    .collect();
                let media = RoomMedia {
                    publisher: user,
                    tracks,
                };
                (room, Some(media))
            }
            Ok(MediaEvent::Stopped { room }) => (room, None),
            Ok(MediaEvent::RecordingFinished { .. }) => continue,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "media announcements lagged");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        hub.announce_media(room, media).await;
    }
}
