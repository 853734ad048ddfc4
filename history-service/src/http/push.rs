//! Push registrations of the caller's devices, and their notification setting per room.

use super::auth::{AuthUser, Person};
use super::error::{ApiJson, ErrorBody};
use super::{ApiError, AppState};
use crate::push::{Push, Registration};
use crate::rooms::Rooms;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use roost_store::{Notifications, PushDevice, PushTarget};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(unregister))
        .routes(routes!(get_notifications, put_notifications))
        .routes(routes!(get_default_notifications, put_default_notifications))
}

/// A registered device, as its user sees it.
#[derive(Serialize, ToSchema)]
pub(crate) struct Device {
    id: String,
    device: String,
    #[serde(flatten)]
    target: PushTarget,
    created_at: i64,
}

impl From<PushDevice> for Device {
    fn from(d: PushDevice) -> Self {
        Self { id: d.id, device: d.device, target: d.target, created_at: d.created_at }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Devices {
    devices: Vec<Device>,
}

/// Registers one of the caller's devices for pushes (a Web Push subscription, or an FCM or
/// APNs token); registering the same `device` again replaces its registration. Bots are
/// never pushed: they cannot register.
#[utoipa::path(post, path = "/v1/push/devices", request_body = Registration, security(("bearer" = [])),
    responses((status = 201, body = Device), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn register(
    State(push): State<Push>,
    Person(user): Person,
    ApiJson(registration): ApiJson<Registration>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    Ok((StatusCode::CREATED, Json(push.register(&user, registration).await?.into())))
}

/// The caller's registered devices.
#[utoipa::path(get, path = "/v1/push/devices", security(("bearer" = [])), responses((status = 200, body = Devices)))]
pub(crate) async fn list(State(push): State<Push>, AuthUser(user): AuthUser) -> Result<Json<Devices>, ApiError> {
    let devices = push.devices(&user).await?.into_iter().map(Device::from).collect();
    Ok(Json(Devices { devices }))
}

/// Forgets one of the caller's registrations.
#[utoipa::path(delete, path = "/v1/push/devices/{id}", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn unregister(
    State(push): State<Push>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    push.unregister(&user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How much of the room the caller wants pushed: their setting for it, else their default
/// (`GET /v1/notifications`), else `all`.
#[utoipa::path(get, path = "/v1/rooms/{id}/notifications", security(("bearer" = [])),
    responses((status = 200, body = Notifications), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_notifications(
    State(rooms): State<Rooms>,
    State(push): State<Push>,
    AuthUser(user): AuthUser,
    Path(room): Path<String>,
) -> Result<Json<Notifications>, ApiError> {
    rooms.of_member(&room, &user).await?;
    Ok(Json(push.notifications(&room, &user).await?))
}

/// Sets how much of the room the caller wants pushed: `all`, `mentions` or `none`, and
/// nothing at all before `muted_until` (ms since the epoch).
#[utoipa::path(put, path = "/v1/rooms/{id}/notifications", request_body = Notifications, security(("bearer" = [])),
    responses((status = 200, body = Notifications), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn put_notifications(
    State(rooms): State<Rooms>,
    State(push): State<Push>,
    AuthUser(user): AuthUser,
    Path(room): Path<String>,
    ApiJson(setting): ApiJson<Notifications>,
) -> Result<Json<Notifications>, ApiError> {
    rooms.of_member(&room, &user).await?;
    push.set_notifications(&room, &user, setting).await?;
    Ok(Json(setting))
}

/// The caller's default for rooms they set nothing for (`all` until they choose).
#[utoipa::path(get, path = "/v1/notifications", security(("bearer" = [])),
    responses((status = 200, body = Notifications)))]
pub(crate) async fn get_default_notifications(
    State(push): State<Push>,
    AuthUser(user): AuthUser,
) -> Result<Json<Notifications>, ApiError> {
    Ok(Json(push.default_notifications(&user).await?))
}

/// Sets the caller's default for rooms they set nothing for; a room's own setting wins.
#[utoipa::path(put, path = "/v1/notifications", request_body = Notifications, security(("bearer" = [])),
    responses((status = 200, body = Notifications), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn put_default_notifications(
    State(push): State<Push>,
    AuthUser(user): AuthUser,
    ApiJson(setting): ApiJson<Notifications>,
) -> Result<Json<Notifications>, ApiError> {
    push.set_default_notifications(&user, setting).await?;
    Ok(Json(setting))
}
