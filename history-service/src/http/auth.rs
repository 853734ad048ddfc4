//! Accounts and tokens: register, login, refresh, and the bearer-token extractor.

use super::error::{ApiJson, ErrorBody};
use super::throttle::ClientAddress;
use super::{ApiError, AppState};
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use roost_auth::passwords::PoolError;
use roost_auth::tokens::{hex, random_secret};
use roost_protocol::{now_millis, Claims, Name};
use roost_store::{Presented, RefreshToken};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register)).routes(routes!(login)).routes(routes!(refresh))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Credentials {
    username: Name,
    /// [`MIN_PASSWORD`] to [`MAX_PASSWORD`] characters (the attribute takes literals only; a
    /// test holds them equal).
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Registered {
    username: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

/// A token pair.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenPair {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
}

/// The authenticated user of a request, from `Authorization: Bearer <access token>`.
pub(crate) struct AuthUser(pub(crate) String);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Self(bearer_claims(parts, state)?.sub))
    }
}

/// Without an `Authorization` header: no user (a route that also takes other proof); with
/// one, it must hold.
impl OptionalFromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, ApiError> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            Ok(Some(Self(bearer_claims(parts, state)?.sub)))
        } else {
            Ok(None)
        }
    }
}

/// A user who is not a bot: only people create and join rooms, open DMs and create bots, so a
/// bot stays in the rooms it was made for.
pub(crate) struct Person(pub(crate) String);

impl FromRequestParts<AppState> for Person {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let claims = bearer_claims(parts, state)?;
        match claims.bot {
            None => Ok(Self(claims.sub)),
            Some(_) => Err(ApiError::forbidden("bots cannot do this")),
        }
    }
}

/// The verified claims of the request's bearer token; a revoked bot token is refused.
fn bearer_claims(parts: &Parts, state: &AppState) -> Result<Claims, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    // the scheme is case-insensitive (RFC 9110 section 11.1)
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::unauthorized("expected 'Authorization: Bearer <token>'"))?;
    let claims = state.tokens.verify(token).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    if !state.membership.admits(&claims.sub, claims.bot.as_deref()) {
        return Err(ApiError::unauthorized("token revoked"));
    }
    Ok(claims)
}

/// Password length in characters (what the OpenAPI schema's `minLength`/`maxLength` count).
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

#[utoipa::path(post, path = "/v1/auth/register", request_body = Credentials, responses(
    (status = 201, body = Registered), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
    (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn register(
    axum::extract::State(state): axum::extract::State<AppState>,
    address: ClientAddress,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    state.throttle.attempt_from(&address)?;
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&body.password.chars().count()) {
        return Err(ApiError::bad_request(format!("password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")));
    }
    let hash = state.passwords.hash(body.password).await.map_err(saturated)?;
    state.store.create_user(body.username.as_str(), &hash).await.map_err(|e| match e {
        roost_store::StoreError::Conflict => ApiError::conflict("username taken"),
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(Registered { username: body.username.to_string() })))
}

#[utoipa::path(post, path = "/v1/auth/login", request_body = Credentials, responses(
    (status = 200, body = TokenPair), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody),
    (status = 503, body = ErrorBody)))]
pub(crate) async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    address: ClientAddress,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<TokenPair>, ApiError> {
    state.throttle.attempt_from(&address)?;
    state.throttle.attempt_on(body.username.as_str(), &address)?;
    let stored = state.store.password_hash(body.username.as_str()).await?;
    // an unknown user costs the same hashing as a wrong password: timing tells nothing
    if !state.passwords.verify(body.password, stored).await.map_err(saturated)? {
        return Err(ApiError::unauthorized("wrong username or password"));
    }
    issue_pair(&state, body.username.as_str(), random_secret()).await.map(Json)
}

#[utoipa::path(post, path = "/v1/auth/refresh", request_body = RefreshRequest, responses(
    (status = 200, body = TokenPair), (status = 401, body = ErrorBody)))]
pub(crate) async fn refresh(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    match state.store.use_refresh_token(&digest(&body.refresh_token)).await? {
        Presented::First(token) if token.expires_at > now_millis() => {
            issue_pair(&state, &token.user, token.family).await.map(Json)
        }
        // a used token coming back means two holders: the thief or the user has the newer one,
        // so neither keeps it (the user signs in again)
        Presented::Again(token) => {
            let revoked = state.store.revoke_refresh_family(&token.family, token.expires_at).await?;
            // whoever replayed it may have registered a device to read the user's pushes
            state.push.forget_devices_of(&token.user).await?;
            warn!(user = token.user, revoked, "a used refresh token came back; its sign-in is revoked");
            metrics::counter!("roost_refresh_token_reuse_total").increment(1);
            Err(ApiError::unauthorized("refresh token already used; sign in again"))
        }
        _ => Err(ApiError::unauthorized("refresh token unknown or expired")),
    }
}

/// A new access token and a new single-use refresh token for `user`, in the sign-in `family`.
async fn issue_pair(state: &AppState, user: &str, family: String) -> Result<TokenPair, ApiError> {
    let refresh_token = random_secret();
    let expires_at = now_millis() + (state.config.refresh_ttl_secs as i64) * 1000;
    let token = RefreshToken { user: user.to_owned(), family, expires_at };
    state.store.put_refresh_token(&digest(&refresh_token), &token).await?;
    // a replay revoking the family while this refresh ran: the new token goes with the rest
    if state.store.refresh_family_revoked(&token.family).await? {
        state.store.revoke_refresh_family(&token.family, expires_at).await?;
        return Err(ApiError::unauthorized("refresh token already used; sign in again"));
    }
    Ok(TokenPair {
        access_token: state.tokens.issue(user, state.config.access_ttl_secs),
        refresh_token,
        token_type: "Bearer",
        expires_in: state.config.access_ttl_secs,
    })
}

/// The answer when password hashing cannot take more work now.
fn saturated(e: PoolError) -> ApiError {
    ApiError::busy(e.to_string(), 1)
}

/// Refresh tokens are stored by their SHA-256, never in the clear.
fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_password_length_is_the_enforced_one() {
        let spec = serde_json::to_value(super::super::api().1).unwrap();
        let password = &spec["components"]["schemas"]["Credentials"]["properties"]["password"];
        assert_eq!(password["minLength"], MIN_PASSWORD);
        assert_eq!(password["maxLength"], MAX_PASSWORD);
    }
}
