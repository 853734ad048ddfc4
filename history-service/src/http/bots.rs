//! Bot accounts: a room owner makes a bot for rooms it owns and gets its long-lived token; the
//! owner revokes it, which ends its connections.

use super::auth::Person;
use super::error::{ApiJson, ErrorBody};
use super::{ApiError, AppState};
use crate::rooms::Rooms;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use roost_auth::tokens::random_secret;
use roost_protocol::{now_millis, Name};
use roost_store::Directive;
use roost_store::{Bot, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_bot)).routes(routes!(revoke_bot))
}

/// How long a bot's token lasts: a year, or until its owner revokes it.
const BOT_TOKEN_TTL_SECS: u64 = 365 * 24 * 3600;

/// Stored as a bot's password hash: no password matches it, so a bot never logs in.
const NO_PASSWORD: &str = "!bot";

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewBot {
    /// The bot's user name: what it signs in as and what `from` says on its messages.
    name: Name,
    /// Rooms the caller owns; the bot becomes a member of these and may join no other.
    #[schema(min_items = 1)]
    rooms: Vec<Name>,
}

/// A new bot and its token (shown once).
#[derive(Serialize, ToSchema)]
pub(crate) struct BotToken {
    name: String,
    owner: String,
    rooms: Vec<String>,
    /// The bot's access token: MQTT password and HTTP bearer token.
    token: String,
    /// Seconds until the token expires.
    expires_in: u64,
}

#[utoipa::path(post, path = "/v1/bots", request_body = NewBot, security(("bearer" = [])), responses(
    (status = 201, body = BotToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
pub(crate) async fn create_bot(
    State(state): State<AppState>,
    State(rooms): State<Rooms>,
    Person(owner): Person,
    ApiJson(body): ApiJson<NewBot>,
) -> Result<(StatusCode, Json<BotToken>), ApiError> {
    let name = body.name.to_string();
    let room_names: Vec<String> = body.rooms.iter().map(Name::to_string).collect();
    if room_names.is_empty() {
        return Err(ApiError::bad_request("name at least one room"));
    }
    rooms.check_bot_rooms(&owner, &room_names).await?;
    state.store.create_user(&name, NO_PASSWORD).await.map_err(|e| match e {
        StoreError::Conflict => ApiError::conflict(format!("the name '{name}' is taken")),
        other => other.into(),
    })?;
    let token_id = random_secret();
    let bot = Bot { name: name.clone(), owner: owner.clone(), token_id: token_id.clone(), created_at: now_millis() };
    state.store.create_bot(&bot).await?;
    state.relay.relay(Directive::EnrollBot { bot: name.clone(), token_id: token_id.clone() }).await?;
    for room in &room_names {
        rooms.admit(room, &name).await?;
    }
    let token = state.tokens.issue_bot(&name, &token_id, BOT_TOKEN_TTL_SECS);
    Ok((StatusCode::CREATED, Json(BotToken { name, owner, rooms: room_names, token, expires_in: BOT_TOKEN_TTL_SECS })))
}

#[utoipa::path(delete, path = "/v1/bots/{name}", security(("bearer" = [])), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_bot(
    State(state): State<AppState>,
    State(rooms): State<Rooms>,
    Person(owner): Person,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.bot(&name).await?.is_none_or(|bot| bot.owner != owner) {
        return Err(ApiError::not_found(format!("you have no bot '{name}'")));
    }
    // revoked first: its connections end before its memberships go
    state.relay.relay(Directive::RevokeBot { bot: name.clone() }).await?;
    rooms.dismiss_everywhere(&name).await?;
    state.store.delete_bot(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
