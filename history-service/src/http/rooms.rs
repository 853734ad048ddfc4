//! Room endpoints: create, list, join, leave, owner-managed members, delete, direct messages.

use super::auth::{AuthUser, Person};
use super::error::{ApiJson, ApiQuery, ErrorBody};
use super::{ApiError, AppState};
use crate::rooms::{ListedRoom, RoomDetail, Rooms};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use roost_protocol::Name;
use roost_store::Room;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_room, list_rooms))
        .routes(routes!(directory))
        .routes(routes!(get_room, delete_room))
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(open_dm))
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

#[derive(Serialize, ToSchema)]
pub(crate) struct RoomList {
    rooms: Vec<Room>,
}

#[utoipa::path(post, path = "/v1/rooms", request_body = NewRoom, security(("bearer" = [])), responses(
    (status = 201, body = RoomDetail), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_room(
    State(rooms): State<Rooms>,
    Person(user): Person,
    ApiJson(body): ApiJson<NewRoom>,
) -> Result<(StatusCode, Json<RoomDetail>), ApiError> {
    Ok((StatusCode::CREATED, Json(rooms.create(&user, body.name.as_str(), body.private).await?)))
}

#[utoipa::path(get, path = "/v1/rooms", security(("bearer" = [])), responses((status = 200, body = RoomList)))]
pub(crate) async fn list_rooms(
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
) -> Result<Json<RoomList>, ApiError> {
    Ok(Json(RoomList { rooms: rooms.of_user(&user).await? }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DirectoryQuery {
    /// Rooms whose name starts with this (name characters; case aside); absent: every room.
    #[param(pattern = r"^[A-Za-z0-9_.-]{0,64}$")]
    q: Option<String>,
    /// The `next` of the page before.
    cursor: Option<Name>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Directory {
    /// In name order, at most 50.
    rooms: Vec<ListedRoom>,
    /// The `cursor` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// The room directory: public rooms by name prefix, with member counts and last activity.
/// Private rooms and direct-message rooms are never listed.
#[utoipa::path(get, path = "/v1/rooms/public", params(DirectoryQuery), security(("bearer" = [])), responses(
    (status = 200, body = Directory), (status = 400, body = ErrorBody)))]
pub(crate) async fn directory(
    State(rooms): State<Rooms>,
    _reader: AuthUser,
    ApiQuery(query): ApiQuery<DirectoryQuery>,
) -> Result<Json<Directory>, ApiError> {
    let prefix = query.q.unwrap_or_default().to_ascii_lowercase();
    if !roost_protocol::names::is_prefix(&prefix) {
        return Err(ApiError::bad_request("q is the start of a room name: up to 64 of a-z, 0-9, '_', '.', '-'"));
    }
    let (rooms, next) = rooms.directory(&prefix, query.cursor.as_ref().map(|cursor| cursor.as_ref())).await?;
    Ok(Json(Directory { rooms, next }))
}

#[utoipa::path(get, path = "/v1/rooms/{id}", security(("bearer" = [])), responses(
    (status = 200, body = RoomDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_room(
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<RoomDetail>, ApiError> {
    Ok(Json(rooms.get(&id, &user).await?))
}

#[utoipa::path(post, path = "/v1/rooms/{id}/join", security(("bearer" = [])), responses(
    (status = 200, body = RoomDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn join(
    State(rooms): State<Rooms>,
    Person(user): Person,
    Path(id): Path<String>,
) -> Result<Json<RoomDetail>, ApiError> {
    Ok(Json(rooms.join(&id, &user).await?))
}

#[utoipa::path(post, path = "/v1/rooms/{id}/leave", security(("bearer" = [])), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn leave(
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    rooms.leave(&id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/rooms/{id}/members", request_body = UserRef, security(("bearer" = [])), responses(
    (status = 200, body = RoomDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn add_member(
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserRef>,
) -> Result<Json<RoomDetail>, ApiError> {
    Ok(Json(rooms.add_member(&id, &user, body.user.as_str()).await?))
}

#[utoipa::path(delete, path = "/v1/rooms/{id}/members/{user}", security(("bearer" = [])), responses(
    (status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn remove_member(
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path((id, removed)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    rooms.remove_member(&id, &user, &removed).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/rooms/{id}", security(("bearer" = [])), responses(
    (status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_room(
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    rooms.delete(&id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/dms", request_body = UserRef, security(("bearer" = [])), responses(
    (status = 201, body = RoomDetail), (status = 200, body = RoomDetail), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn open_dm(
    State(rooms): State<Rooms>,
    Person(user): Person,
    ApiJson(body): ApiJson<UserRef>,
) -> Result<(StatusCode, Json<RoomDetail>), ApiError> {
    let dm = rooms.open_dm(&user, body.user.as_str()).await?;
    Ok((if dm.created { StatusCode::CREATED } else { StatusCode::OK }, Json(dm.room)))
}
