//! Presence over HTTP: a user's aggregate and a room's members', for those who share a room.

use super::auth::AuthUser;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::rooms::Rooms;
use axum::extract::{Path, State};
use axum::Json;
use roost_protocol::PresenceAggregate;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(room_presence)).routes(routes!(user_presence))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MemberPresence {
    user: String,
    #[serde(flatten)]
    presence: PresenceAggregate,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RoomPresence {
    members: Vec<MemberPresence>,
}

#[utoipa::path(get, path = "/v1/users/{name}/presence", security(("bearer" = [])), responses(
    (status = 200, body = PresenceAggregate), (status = 404, body = ErrorBody)))]
pub(crate) async fn user_presence(
    State(state): State<AppState>,
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<PresenceAggregate>, ApiError> {
    rooms.shares_room(&user, &name)?;
    Ok(Json(state.presence.presence_of(&name).await?))
}

#[utoipa::path(get, path = "/v1/rooms/{id}/presence", security(("bearer" = [])), responses(
    (status = 200, body = RoomPresence), (status = 404, body = ErrorBody)))]
pub(crate) async fn room_presence(
    State(state): State<AppState>,
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<RoomPresence>, ApiError> {
    let mut members = Vec::new();
    for member in rooms.members_for(&id, &user).await? {
        let presence = state.presence.presence_of(&member).await?;
        members.push(MemberPresence { user: member, presence });
    }
    Ok(Json(RoomPresence { members }))
}
