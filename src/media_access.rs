//! The media endpoint and the hub, joined: who may publish and play, answered from the hub's
//! room records (the host publishes; in a live class the class's instructors may too, and the
//! trainees they invite on stage as guests; a proctoring room's examinees publish their webcams
//! as guests, and only those who watch the exam may play it; everyone who may enter any other
//! room may play), whom a room's stream key publishes as (OBS Studio), and the
//! endpoint's publishing news announced in the room.

use std::collections::HashMap;
use std::sync::Arc;

use foundation::identity::Principal;
use foundation::{ApiError, ErrorCode};
use media::MediaEvent;
use media::{Intent, PublishAs, RoomAccess, RoomInfo};
use signaling::protocol::{MediaTrack, MemberRole, PublisherRole, RoomMedia};
use signaling::store::RoomKind;
use tokio::sync::broadcast;

pub(crate) struct HubAccess(pub Arc<signaling::Hub>);

/// Who may do what with a room's media (docs/media.md, "Who may do what"): returns how a
/// publisher publishes, or the refusal.
fn decide(
    role: MemberRole,
    kind: RoomKind,
    on_stage: bool,
    intent: Intent,
) -> Result<PublishAs, ApiError> {
    let refuse = |message: &str| Err(ApiError::with_message(ErrorCode::Forbidden, message));
    match intent {
        // A proctoring room's pictures are for those who watch the exam, not the examinees.
        Intent::Play if kind == RoomKind::Proctoring && role == MemberRole::Viewer => {
            refuse("考生不能观看监考画面")
        }
        Intent::Play => Ok(PublishAs::Main),
        Intent::Publish if signaling::hub::may_publish(role, kind) => Ok(PublishAs::Main),
        Intent::Publish => match kind {
            RoomKind::LiveClass if on_stage => Ok(PublishAs::Guest),
            RoomKind::LiveClass => refuse("讲师邀请你上台后才能推流"),
            RoomKind::Proctoring if role == MemberRole::Viewer => Ok(PublishAs::Guest),
            RoomKind::Proctoring => refuse("监考间只有考生推送摄像头画面"),
            RoomKind::LiveCommerce => refuse("只有主播可以推流"),
        },
    }
}

#[async_trait::async_trait]
impl RoomAccess for HubAccess {
    async fn authorize(
        &self,
        principal: &Principal,
        room: i64,
        intent: Intent,
    ) -> Result<RoomInfo, ApiError> {
        let (role, kind, class_id) = self.0.member_role(principal, room).await?;
        let on_stage = self.0.on_stage(room, principal.account_id);
        Ok(RoomInfo {
            class_id,
            always_recorded: kind == RoomKind::LiveClass,
            publish_as: decide(role, kind, on_stage, intent)?,
        })
    }

    async fn stream_key_principal(
        &self,
        room: i64,
        key: &str,
    ) -> Result<Option<Principal>, ApiError> {
        self.0.stream_key_principal(room, key).await
    }

    async fn class_visible(&self, principal: &Principal, class: i64) -> Result<bool, ApiError> {
        self.0.class_visible(principal, class).await
    }
}

/// Announces every publish and unpublish of the media endpoint in its room (a system event, so
/// every viewer learns it, in order, on every node): the room's publishers, main first, then
/// the guests in the order they started.
pub(crate) async fn announce(
    mut events: broadcast::Receiver<MediaEvent>,
    hub: Arc<signaling::Hub>,
) {
    let mut rooms: HashMap<i64, Vec<RoomMedia>> = HashMap::new();
    loop {
        let room = match events.recv().await {
            Ok(MediaEvent::Publishing {
                room,
                user,
                role,
                tracks,
            }) => {
                let tracks = tracks
                    .into_iter()
                    .map(|t| MediaTrack {
                        kind: t.kind.to_owned(),
                        codec: t.codec,
                        layers: u8::try_from(t.layers).unwrap_or(u8::MAX),
                    })
                    .collect();
                let media = RoomMedia {
                    publisher: user,
                    tracks,
                    role: match role {
                        PublishAs::Main => PublisherRole::Main,
                        PublishAs::Guest => PublisherRole::Guest,
                    },
                };
                let list = rooms.entry(room).or_default();
                match list.iter_mut().find(|m| m.publisher == user) {
                    Some(known) => *known = media,
                    None => list.push(media),
                }
                // Main first; otherwise in the order they came (the sort is stable).
                list.sort_by_key(|m| m.role != PublisherRole::Main);
                room
            }
            Ok(MediaEvent::Stopped { room, user }) => {
                if let Some(list) = rooms.get_mut(&room) {
                    list.retain(|m| m.publisher != user);
                }
                room
            }
            Ok(MediaEvent::RecordingFinished { .. }) => continue,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "media announcements lagged");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let publishers = rooms.get(&room).cloned().unwrap_or_default();
        if publishers.is_empty() {
            rooms.remove(&room);
        }
        hub.announce_media(room, publishers).await;
    }
}

/// Stops what a trainee publishes when they are taken off a live class's stage.
pub(crate) async fn end_stage_media(hub: Arc<signaling::Hub>, media: media::Media) {
    let mut ended = hub.stage_ended();
    loop {
        match ended.recv().await {
            Ok((room, user)) => {
                if let Err(e) = media.end_publisher(room, user).await {
                    tracing::warn!(room, user, error = %e, "ending a stage guest's media");
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "stage ends lagged");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_media_crate_knows_the_stream_keys_of_the_hub() {
        assert_eq!(
            media::access::STREAM_KEY_PREFIX,
            signaling::stream_keys::KEY_PREFIX
        );
        assert!(signaling::stream_keys::generate().starts_with(media::access::STREAM_KEY_PREFIX));
    }

    use super::*;

    #[test]
    fn who_may_publish_and_play() {
        use Intent::{Play, Publish};
        use MemberRole::{Host, Instructor, Supervisor, Viewer};
        use RoomKind::{LiveClass, LiveCommerce, Proctoring};
        let ok = |role, kind, stage, intent| decide(role, kind, stage, intent).ok();
        // Live commerce: the host publishes; everyone plays.
        assert_eq!(
            ok(Host, LiveCommerce, false, Publish),
            Some(PublishAs::Main)
        );
        assert_eq!(ok(Viewer, LiveCommerce, true, Publish), None);
        assert_eq!(ok(Instructor, LiveCommerce, false, Publish), None);
        assert_eq!(ok(Viewer, LiveCommerce, false, Play), Some(PublishAs::Main));
        // Live class: host and instructors are main; a trainee only once invited on stage.
        assert_eq!(
            ok(Instructor, LiveClass, false, Publish),
            Some(PublishAs::Main)
        );
        assert_eq!(ok(Viewer, LiveClass, false, Publish), None);
        assert_eq!(ok(Viewer, LiveClass, true, Publish), Some(PublishAs::Guest));
        assert_eq!(ok(Supervisor, LiveClass, false, Publish), None);
        // Proctoring: examinees publish as guests and may not watch; supervisors watch.
        assert_eq!(
            ok(Viewer, Proctoring, false, Publish),
            Some(PublishAs::Guest)
        );
        assert_eq!(ok(Viewer, Proctoring, false, Play), None);
        assert_eq!(
            ok(Supervisor, Proctoring, false, Play),
            Some(PublishAs::Main)
        );
        assert_eq!(ok(Supervisor, Proctoring, false, Publish), None);
        assert_eq!(
            ok(Instructor, Proctoring, false, Play),
            Some(PublishAs::Main)
        );
        let refused = decide(Viewer, Proctoring, false, Play).expect_err("refused");
        assert_eq!(refused.code, ErrorCode::Forbidden);
    }
}
