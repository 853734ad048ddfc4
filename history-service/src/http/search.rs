//! Search: messages found by their words, in one room or across every room of the reader's.

use super::auth::AuthUser;
use super::error::{ApiQuery, ErrorBody};
use super::{ApiError, AppState};
use crate::rooms::Rooms;
use axum::extract::{Path, State};
use axum::Json;
use roost_protocol::Envelope;
use roost_store::{words, SearchCursor, SearchScope};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(in_room)).routes(routes!(everywhere))
}

const DEFAULT_LIMIT: u32 = 20;
/// Words one query may ask for: every one must be in a message for it to match.
const MAX_WORDS: usize = 8;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// Words the messages must all contain (whole words, case aside), at most 8.
    #[param(min_length = 1, max_length = 256)]
    q: String,
    /// The `next` of the page before.
    before: Option<String>,
    /// At most this many: 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

impl SearchQuery {
    /// The words asked for and the page size, or why they cannot be searched.
    fn parts(&self) -> Result<(Vec<String>, u32), ApiError> {
        let asked = words(&self.q);
        if self.q.chars().count() > 256 || asked.is_empty() || asked.len() > MAX_WORDS {
            return Err(ApiError::bad_request(format!(
                "q is 1 to {MAX_WORDS} words (letters and digits) in at most 256 characters"
            )));
        }
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::bad_request("limit must be 1 to 100"));
        }
        Ok((asked, limit))
    }
}

/// Messages found, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct Found {
    messages: Vec<Envelope>,
    /// The `before` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

impl Found {
    /// A page of `limit` asked for; `next` says where the next one starts when it is full.
    fn page(messages: Vec<Envelope>, limit: u32, next: impl FnOnce(&Envelope) -> String) -> Self {
        let next = messages.last().filter(|_| messages.len() == limit as usize).map(next);
        Self { messages, next }
    }
}

/// Messages of one room with every word of `q`, newest first: neither edits, deletes and
/// reactions nor deleted messages; an edited message by its newest text. Members only.
#[utoipa::path(get, path = "/v1/rooms/{id}/search", params(SearchQuery), security(("bearer" = [])), responses(
    (status = 200, body = Found), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn in_room(
    State(state): State<AppState>,
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<Found>, ApiError> {
    rooms.of_member(&id, &user).await?;
    let (asked, limit) = query.parts()?;
    let before = match query.before.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => return Err(ApiError::bad_request("before is the next of the page before: a seq")),
    };
    let found = state.store.search(SearchScope::Room { room: &id, before }, &asked, limit).await?;
    Ok(Json(Found::page(found, limit, |last| last.seq.to_string())))
}

/// Messages with every word of `q` in all the rooms the caller is a member of now, newest
/// first (by time; a room the caller left is never searched).
#[utoipa::path(get, path = "/v1/search", params(SearchQuery), security(("bearer" = [])), responses(
    (status = 200, body = Found), (status = 400, body = ErrorBody)))]
pub(crate) async fn everywhere(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<Found>, ApiError> {
    let (asked, limit) = query.parts()?;
    let before = match query.before.as_deref().map(cursor_from) {
        None => None,
        Some(Some(cursor)) => Some(cursor),
        Some(None) => return Err(ApiError::bad_request("before is the next of the page before")),
    };
    let scope = SearchScope::RoomsOf { user: &user, before: before.as_ref() };
    let found = state.store.search(scope, &asked, limit).await?;
    Ok(Json(Found::page(found, limit, |last| format!("{}-{}-{}", last.ts, last.seq, last.room))))
}

/// A cross-room `next`, `{ts}-{seq}-{room}`, read back.
fn cursor_from(text: &str) -> Option<SearchCursor> {
    let mut parts = text.splitn(3, '-');
    let (ts, seq, room) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?);
    roost_protocol::names::is_valid(room).then(|| SearchCursor { ts, room: room.to_owned(), seq })
}

#[cfg(test)]
mod tests {
    use super::cursor_from;

    #[test]
    fn a_cross_room_cursor_reads_back() {
        let cursor = cursor_from("1796000000000-42-lobby-2").expect("a cursor");
        assert_eq!((cursor.ts, cursor.seq, cursor.room.as_str()), (1_796_000_000_000, 42, "lobby-2"));
        for bad in ["", "12", "12-x-lobby", "12-3-../x", "12-3-"] {
            assert!(cursor_from(bad).is_none(), "{bad}");
        }
    }
}
