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
    /// Messages as their edits, deletes and reactions left them; with `after`, those events too.
    messages: Vec<ListedMessage>,
    /// The messages listed show every event up to this seq: live events at or below it are
    /// in them already. Absent on `before` pages (older messages, shown as they are now).
    #[serde(skip_serializing_if = "Option::is_none")]
    through: Option<i64>,
}

/// A stored message (as its edits and delete left it) or event as history lists it, with the
/// message it answers and its reactions.
#[derive(Serialize, ToSchema)]
pub(crate) struct ListedMessage {
    #[serde(flatten)]
    message: Envelope,
    /// The message `reply_to` names, while history keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    quote: Option<Quote>,
    /// Its reactions: each key with how many gave it, in the order keys were first given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reactions: Vec<Reaction>,
}

/// The message a reply answers, as the reply shows it (now: edited, or deleted).
#[derive(Clone, Serialize, ToSchema)]
pub(crate) struct Quote {
    seq: i64,
    from: String,
    body: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

/// How many reacted to a message with one key.
#[derive(Serialize, ToSchema)]
pub(crate) struct Reaction {
    key: String,
    count: u64,
    /// The reader is one of them.
    me: bool,
}

/// `messages` of `room`, each with the message it answers and its reactions as `reader` sees them.
async fn listed(
    store: &dyn Store,
    room: &str,
    reader: &str,
    messages: Vec<Envelope>,
) -> Result<Vec<ListedMessage>, ApiError> {
    let targets: Vec<i64> = messages.iter().filter_map(|message| message.reply_to).collect();
    let mut quotes: HashMap<i64, Quote> = HashMap::new();
    if !targets.is_empty() {
        for quoted in store.messages_at(room, &targets).await? {
            let quote = Quote { seq: quoted.seq, from: quoted.from, body: quoted.body, deleted: quoted.deleted };
            quotes.insert(quoted.seq, quote);
        }
    }
    let reacted: Vec<i64> = messages.iter().filter(|message| message.is_live_message()).map(|m| m.seq).collect();
    let mut reactions: HashMap<i64, Vec<Reaction>> = HashMap::new();
    for count in store.reactions(room, &reacted, reader).await? {
        let reaction = Reaction { key: count.key, count: count.count, me: count.me };
        reactions.entry(count.seq).or_default().push(reaction);
    }
    let listed = messages.into_iter().map(|message| ListedMessage {
        quote: message.reply_to.and_then(|seq| quotes.get(&seq)).cloned(),
        reactions: reactions.remove(&message.seq).unwrap_or_default(),
        message,
    });
    Ok(listed.collect())
}

/// Most messages an unread count counts; beyond it the count is `capped`.
const UNREAD_COUNTED: usize = 100;
/// Most pages of history (of [`MAX_LIMIT`]) an unread count reads.
const UNREAD_PAGES: usize = 10;

/// What a member has not read yet in a room: messages of others after its last receipt (edits,
/// deletes, reactions and deleted messages aside).
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
    // read before the page: an event written in between is in the page and above `through`,
    // shown twice at worst, never lost
    let newest = match page {
        Page::Latest { .. } => Some(state.store.last_seq(&id).await?),
        _ => None,
    };
    let messages = state.store.messages(&id, page).await?;
    let through = match page {
        Page::Latest { .. } => newest,
        Page::After { after, .. } => Some(messages.last().map_or(after, |last| last.seq)),
        Page::Before { .. } => None,
    };
    Ok(Json(MessagePage { messages: listed(state.store.as_ref(), &id, &user, messages).await?, through }))
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
    // the pages list edits, deletes and reactions too, which are not unread: read on until more
    // than the count is found, the room ends, or enough was read to call it "more"
    let (mut after, mut unread, mut more) = (last_read.unwrap_or(0), 0, false);
    for _ in 0..UNREAD_PAGES {
        let page = state.store.messages(&id, Page::After { after, before: None, limit: MAX_LIMIT }).await?;
        unread += page.iter().filter(|m| m.from != user && m.is_live_message()).count();
        more = page.len() == MAX_LIMIT as usize;
        match page.last() {
            Some(last) if more && unread <= UNREAD_COUNTED => after = last.seq,
            _ => break,
        }
    }
    let capped = unread > UNREAD_COUNTED || more;
    Ok(Json(Unread { last_read, unread: unread.min(UNREAD_COUNTED), capped }))
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
