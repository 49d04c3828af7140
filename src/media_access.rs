//! Who may publish and play, answered from the hub's room records: the host publishes; in a
//! live class the class's instructors may too; everyone who may enter the room may play.

use std::sync::Arc;

use foundation::identity::Principal;
use foundation::{ApiError, ErrorCode};
use media::{Intent, RoomAccess};
use signaling::protocol::MemberRole;
use signaling::store::RoomKind;

pub(crate) struct HubAccess(pub Arc<signaling::Hub>);

#[async_trait::async_trait]
impl RoomAccess for HubAccess {
    async fn authorize(
        &self,
        principal: &Principal,
        room: i64,
        intent: Intent,
    ) -> Result<(), ApiError> {
        let (role, kind) = self.0.member_role(principal, room).await?;
        let may_publish = role == MemberRole::Host
            || (role == MemberRole::Instructor && kind == RoomKind::LiveClass);
        match intent {
            Intent::Play => Ok(()),
            Intent::Publish if may_publish => Ok(()),
            Intent::Publish => Err(ApiError::with_message(
                ErrorCode::Forbidden,
                "只有主播（直播课中也包括本班讲师）可以推流",
            )),
        }
    }
}
