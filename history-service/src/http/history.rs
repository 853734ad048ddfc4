//! History pages and unread counts, for members of the rooms concerned.

use super::auth::AuthUser;
use super::error::{ApiQuery, ErrorBody};
use super::{ApiError, AppState};
use crate::rooms::Rooms;
use axum::extract::{Path, State};
use axum::Json;
use roost_protocol::Envelope;
use roost_store::{Page, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(messages)).routes(routes!(unread))
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Messages with a smaller `seq`, newest first.
    before: Option<i64>,
    /// Messages with a larger `seq`, oldest first (gap recovery after a reconnect).
    after: Option<i64>,
    /// At most this many: 1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`] (literals in the
    /// attribute; a test holds them equal).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MessagePage {
    messages: Vec<ListedMessage>,
}

/// A stored message as history lists it, with the message it answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct ListedMessage {
    #[serde(flatten)]
    message: Envelope,
    /// The message `reply_to` names, while history keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    quote: Option<Quote>,
}

/// The message a reply answers, as the reply shows it.
#[derive(Clone, Serialize, ToSchema)]
pub(crate) struct Quote {
    seq: i64,
    from: String,
    body: String,
}

/// `messages` of `room`, each with the message it answers.
async fn with_quotes(store: &dyn Store, room: &str, messages: Vec<Envelope>) -> Result<Vec<ListedMessage>, ApiError> {
    let targets: Vec<i64> = messages.iter().filter_map(|message| message.reply_to).collect();
    let mut quotes: HashMap<i64, Quote> = HashMap::new();
    if !targets.is_empty() {
        for quoted in store.messages_at(room, &targets).await? {
            quotes.insert(quoted.seq, Quote { seq: quoted.seq, from: quoted.from, body: quoted.body });
        }
    }
    let listed = messages
        .into_iter()
        .map(|message| ListedMessage { quote: message.reply_to.and_then(|seq| quotes.get(&seq)).cloned(), message });
    Ok(listed.collect())
}

/// Most messages an unread count looks at; beyond it the count is `capped`.
const UNREAD_COUNTED: u32 = 100;

/// What a member has not read yet in a room: messages of others after its last receipt.
#[derive(Serialize, ToSchema)]
pub(crate) struct Unread {
    /// The `read_seq` of the member's last receipt (`null`: none yet).
    last_read: Option<i64>,
    /// Messages of others after `last_read`, counting at most 100.
    unread: usize,
    /// True when there are more than `unread` (show "100+").
    capped: bool,
}

#[utoipa::path(get, path = "/v1/rooms/{id}/messages", params(PageQuery), security(("bearer" = [])), responses(
    (status = 200, body = MessagePage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn messages(
    State(state): State<AppState>,
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    rooms.of_member(&id, &user).await?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let page = match (query.before, query.after) {
        (before, Some(after)) => Page::After { after, before, limit },
        (Some(before), None) => Page::Before { before, limit },
        (None, None) => Page::Latest { limit },
    };
    let messages = state.store.messages(&id, page).await?;
    Ok(Json(MessagePage { messages: with_quotes(state.store.as_ref(), &id, messages).await? }))
}

#[utoipa::path(get, path = "/v1/rooms/{id}/unread", security(("bearer" = [])), responses(
    (status = 200, body = Unread), (status = 404, body = ErrorBody)))]
pub(crate) async fn unread(
    State(state): State<AppState>,
    State(rooms): State<Rooms>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Unread>, ApiError> {
    rooms.of_member(&id, &user).await?;
    let last_read = state.store.last_read(&id, &user).await?;
    let page = Page::After { after: last_read.unwrap_or(0), before: None, limit: UNREAD_COUNTED };
    let after = state.store.messages(&id, page).await?;
    let capped = after.len() == UNREAD_COUNTED as usize;
    let unread = after.iter().filter(|message| message.from != user).count();
    Ok(Json(Unread { last_read, unread, capped }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_page_limit_is_the_enforced_one() {
        let spec = serde_json::to_value(super::super::api().1).unwrap();
        let parameters = spec["paths"]["/v1/rooms/{id}/messages"]["get"]["parameters"].as_array().unwrap().clone();
        let limit = parameters.iter().find(|p| p["name"] == "limit").expect("limit documented");
        assert_eq!(limit["in"], "query");
        assert_eq!(
            (limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()),
            (Some(1), Some(u64::from(MAX_LIMIT)))
        );
    }
}
