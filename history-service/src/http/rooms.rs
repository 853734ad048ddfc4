//! Rooms: create, list, join, leave, owner-managed members, delete, direct messages.

use super::auth::{AuthUser, Person};
use super::error::{ApiJson, ErrorBody};
use super::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use roost_auth::tokens::hex;
use roost_protocol::{now_millis, InboxNotice, Name, RoomEvent, Topic};
use roost_store::Directive;
use roost_store::{Room, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/rooms", post(create_room).get(list_rooms))
        .route("/v1/rooms/{id}", get(get_room).delete(delete_room))
        .route("/v1/rooms/{id}/join", post(join))
        .route("/v1/rooms/{id}/leave", post(leave))
        .route("/v1/rooms/{id}/members", post(add_member))
        .route("/v1/rooms/{id}/members/{user}", delete(remove_member))
        .route("/v1/dms", post(open_dm))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewRoom {
    /// The room's name, which is also its id and its topic level.
    name: Name,
    #[serde(default)]
    private: bool,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct UserRef {
    user: Name,
}

/// A room with its members.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomDetail {
    #[serde(flatten)]
    room: Room,
    members: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RoomList {
    rooms: Vec<Room>,
}

impl AppState {
    /// The room `id`, or 404.
    pub(crate) async fn existing_room(&self, id: &str) -> Result<Room, ApiError> {
        self.store.room(id).await?.ok_or_else(|| ApiError::not_found(format!("no room '{id}'")))
    }

    /// The room `id` when `user` may see it (public, or private with `user` a member), else 404.
    async fn visible_room(&self, id: &str, user: &str) -> Result<Room, ApiError> {
        let room = self.existing_room(id).await?;
        if room.private && !self.membership.is_member(id, user) {
            return Err(ApiError::not_found(format!("no room '{id}'")));
        }
        Ok(room)
    }

    /// The room `id` when `user` is a member, else 404 (private) or 403.
    pub(crate) async fn room_of_member(&self, id: &str, user: &str) -> Result<Room, ApiError> {
        let room = self.existing_room(id).await?;
        if self.membership.is_member(id, user) {
            Ok(room)
        } else if room.private {
            Err(ApiError::not_found(format!("no room '{id}'")))
        } else {
            Err(ApiError::forbidden("join the room first"))
        }
    }

    fn detail(&self, room: Room) -> RoomDetail {
        let members = self.membership.members(&room.id);
        RoomDetail { room, members }
    }

    async fn announce(&self, room: &str, event: &RoomEvent) -> Result<(), ApiError> {
        Ok(self.relay.relay(Directive::publish(Topic::Events(room), event)).await?)
    }

    async fn notify(&self, user: &str, notice: &InboxNotice) -> Result<(), ApiError> {
        Ok(self.relay.relay(Directive::publish(Topic::Inbox(user), notice)).await?)
    }

    /// Tells the broker (and this process's view) that `user` is a member of `room`.
    async fn grant(&self, room: &str, user: &str) -> Result<(), ApiError> {
        Ok(self.relay.relay(Directive::Admit { room: room.into(), user: user.into() }).await?)
    }

    /// Adds `user` to `room` in the store and the live view, and tells the room.
    pub(super) async fn admit(&self, room: &str, user: &str) -> Result<bool, ApiError> {
        let added = self.store.add_member(room, user).await?;
        self.grant(room, user).await?;
        if added {
            self.announce(room, &RoomEvent::Joined { room: room.into(), user: user.into(), ts: now_millis() }).await?;
        }
        Ok(added)
    }

    /// Removes `user` from `room` in the store and the live view (revoking its subscriptions).
    pub(super) async fn dismiss(&self, room: &str, user: &str) -> Result<bool, ApiError> {
        let removed = self.store.remove_member(room, user).await?;
        self.relay.relay(Directive::Dismiss { room: room.into(), user: user.into() }).await?;
        Ok(removed)
    }
}

#[utoipa::path(post, path = "/v1/rooms", request_body = NewRoom, security(("bearer" = [])), responses(
    (status = 201, body = RoomDetail), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_room(
    State(state): State<AppState>,
    Person(user): Person,
    ApiJson(body): ApiJson<NewRoom>,
) -> Result<(StatusCode, Json<RoomDetail>), ApiError> {
    if body.name.as_str().starts_with(DIRECT_PREFIX) {
        return Err(ApiError::forbidden(format!(
            "room names starting with '{DIRECT_PREFIX}' are reserved for direct messages (POST /v1/dms)"
        )));
    }
    let owned = state.store.rooms_of(&user).await?.iter().filter(|room| room.owner == user && !room.direct).count();
    if owned >= state.config.max_rooms_per_user {
        return Err(ApiError::forbidden(format!("you own {owned} rooms, the most one may; delete one first")));
    }
    let room = Room {
        id: body.name.to_string(),
        private: body.private,
        owner: user.clone(),
        direct: false,
        created_at: now_millis(),
    };
    state.store.create_room(&room).await.map_err(|e| match e {
        StoreError::Conflict => ApiError::conflict(format!("room '{}' exists", room.id)),
        other => other.into(),
    })?;
    state.grant(&room.id, &user).await?;
    Ok((StatusCode::CREATED, Json(state.detail(room))))
}

#[utoipa::path(get, path = "/v1/rooms", security(("bearer" = [])), responses((status = 200, body = RoomList)))]
pub(crate) async fn list_rooms(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<RoomList>, ApiError> {
    Ok(Json(RoomList { rooms: state.store.rooms_of(&user).await? }))
}

#[utoipa::path(get, path = "/v1/rooms/{id}", security(("bearer" = [])), responses(
    (status = 200, body = RoomDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_room(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<RoomDetail>, ApiError> {
    Ok(Json(state.detail(state.visible_room(&id, &user).await?)))
}

#[utoipa::path(post, path = "/v1/rooms/{id}/join", security(("bearer" = [])), responses(
    (status = 200, body = RoomDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn join(
    State(state): State<AppState>,
    Person(user): Person,
    Path(id): Path<String>,
) -> Result<Json<RoomDetail>, ApiError> {
    let room = state.visible_room(&id, &user).await?;
    state.admit(&id, &user).await?;
    Ok(Json(state.detail(room)))
}

#[utoipa::path(post, path = "/v1/rooms/{id}/leave", security(("bearer" = [])), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn leave(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let room = state.room_of_member(&id, &user).await?;
    if room.owner == user && !room.direct {
        return Err(ApiError::conflict("the owner cannot leave the room; delete it instead"));
    }
    if state.dismiss(&id, &user).await? {
        state.announce(&id, &RoomEvent::Left { room: id.clone(), user, ts: now_millis() }).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The room `id` when `user` owns it. A direct-message room has no owner powers: neither of
/// its two users may add a third, remove the other or delete it.
async fn owned_room(state: &AppState, id: &str, user: &str) -> Result<Room, ApiError> {
    let room = state.room_of_member(id, user).await?;
    if room.direct {
        Err(ApiError::forbidden("a direct-message room has no owner; its two users may only leave it"))
    } else if room.owner == user {
        Ok(room)
    } else {
        Err(ApiError::forbidden("only the room's owner may do this"))
    }
}

#[utoipa::path(post, path = "/v1/rooms/{id}/members", request_body = UserRef, security(("bearer" = [])), responses(
    (status = 200, body = RoomDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn add_member(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserRef>,
) -> Result<Json<RoomDetail>, ApiError> {
    let room = owned_room(&state, &id, &user).await?;
    let added = body.user.as_str();
    if !state.store.user_exists(added).await? {
        return Err(ApiError::not_found(format!("no user '{added}'")));
    }
    if state.store.bot(added).await?.is_some_and(|bot| bot.owner != user) {
        return Err(ApiError::forbidden(format!("only the owner of the bot '{added}' may add it to a room")));
    }
    if state.admit(&id, added).await? {
        state.notify(added, &InboxNotice::AddedToRoom { room: id.clone(), by: user, ts: now_millis() }).await?;
    }
    Ok(Json(state.detail(room)))
}

#[utoipa::path(delete, path = "/v1/rooms/{id}/members/{user}", security(("bearer" = [])), responses(
    (status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, removed)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let room = owned_room(&state, &id, &user).await?;
    if removed == room.owner {
        return Err(ApiError::conflict("the owner cannot be removed; delete the room instead"));
    }
    if !state.dismiss(&id, &removed).await? {
        return Err(ApiError::not_found(format!("'{removed}' is not a member")));
    }
    state.announce(&id, &RoomEvent::Removed { room: id.clone(), user: removed, by: user, ts: now_millis() }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/rooms/{id}", security(("bearer" = [])), responses(
    (status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_room(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    owned_room(&state, &id, &user).await?;
    state.announce(&id, &RoomEvent::Deleted { room: id.clone(), by: user, ts: now_millis() }).await?;
    // the broker stops the room first (no member left, its seq lease dropped), then the store
    // deletes it and raises its floor over every number leased: a publish still in flight is
    // refused or numbered below the floor, never shown in a room re-created under the name
    state.relay.relay(Directive::CloseRoom { room: id.clone() }).await?;
    state.store.delete_room(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The prefix of direct-message room ids, reserved: no one creates a room under it.
const DIRECT_PREFIX: &str = "dm.";

/// The id of the direct-message room of two users: the same whichever of them asks.
fn dm_room_id(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let digest = Sha256::digest(format!("{first}\n{second}").as_bytes());
    format!("{DIRECT_PREFIX}{}", &hex(&digest)[..32])
}

#[utoipa::path(post, path = "/v1/dms", request_body = UserRef, security(("bearer" = [])), responses(
    (status = 201, body = RoomDetail), (status = 200, body = RoomDetail), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn open_dm(
    State(state): State<AppState>,
    Person(user): Person,
    ApiJson(body): ApiJson<UserRef>,
) -> Result<(StatusCode, Json<RoomDetail>), ApiError> {
    let peer = body.user.as_str();
    if peer == user {
        return Err(ApiError::bad_request("a direct-message room needs another user"));
    }
    if !state.store.user_exists(peer).await? {
        return Err(ApiError::not_found(format!("no user '{peer}'")));
    }
    if state.store.bot(peer).await?.is_some() {
        return Err(ApiError::forbidden(format!("'{peer}' is a bot; bots have no direct-message rooms")));
    }
    let id = dm_room_id(&user, peer);
    let room = Room { id: id.clone(), private: true, owner: user.clone(), direct: true, created_at: now_millis() };
    let (status, room) = match state.store.room(&id).await? {
        Some(existing) => (StatusCode::OK, existing),
        None => match state.store.create_room(&room).await {
            Ok(()) => (StatusCode::CREATED, room),
            Err(StoreError::Conflict) => (StatusCode::OK, state.existing_room(&id).await?),
            Err(e) => return Err(e.into()),
        },
    };
    // a room under the id that is not a DM (made before the prefix was reserved) is never
    // handed out: its owner deletes it
    if !room.direct {
        return Err(ApiError::conflict(
            "a room that is not a direct-message room holds this id; its owner must delete it",
        ));
    }
    // a third member (added before DMs lost their owner powers) leaves: only the pair reads it
    for stranger in state.membership.members(&id).into_iter().filter(|member| member != &user && member != peer) {
        if state.dismiss(&id, &stranger).await? {
            let removed = RoomEvent::Removed { room: id.clone(), user: stranger, by: user.clone(), ts: now_millis() };
            state.announce(&id, &removed).await?;
        }
    }
    // both are members again, whichever of them left (the creator of a new one is in the store
    // already, not yet in the live view); reopening a DM both are in changes nothing
    if !state.membership.is_member(&id, &user) {
        state.admit(&id, &user).await?;
    }
    if !state.membership.is_member(&id, peer) && state.admit(&id, peer).await? {
        state.notify(peer, &InboxNotice::NewDm { room: id, with: user, ts: now_millis() }).await?;
    }
    Ok((status, Json(state.detail(room))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dm_room_id_is_symmetric_and_a_valid_name() {
        let id = super::dm_room_id("alice", "bob");
        assert_eq!(id, super::dm_room_id("bob", "alice"));
        assert!(roost_protocol::names::is_valid(&id));
        assert_ne!(id, super::dm_room_id("alice", "carol"));
    }
}
