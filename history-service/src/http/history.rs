//! History pages and unread counts, for members of the rooms concerned.

use super::auth::AuthUser;
use super::error::{ApiQuery, ErrorBody};
use super::{ApiError, AppState};
use crate::rooms::Rooms;
use axum::extract::{Path, State};
use axum::Json;
use roost_protocol::Envelope;
use roost_store::Page;
use serde::{Deserialize, Serialize};
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
    messages: Vec<Envelope>,
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
    Ok(Json(MessagePage { messages: state.store.messages(&id, page).await? }))
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
