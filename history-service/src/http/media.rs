//! Uploads: in to a room, out to its members (or a signed URL), thumbnails, deletion.

use super::auth::AuthUser;
use super::error::{ApiQuery, ErrorBody};
use super::{ApiError, AppState};
use crate::media::{safe_inline, Stored, Uploads};
use crate::rooms::Rooms;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use roost_store::Media;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        // the form extractor would stop at axum's 2 MB default; uploads count their own bytes
        .layer(DefaultBodyLimit::disable())
        .routes(routes!(download, delete_media))
        .routes(routes!(thumbnail))
}

/// Longest file name kept, in characters.
const MAX_FILENAME: usize = 255;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// The file's name as the sender's device knows it (shown to others, never a path).
    filename: Option<String>,
}

/// An upload as stored.
#[derive(Serialize, ToSchema)]
pub(crate) struct Uploaded {
    id: String,
    /// Serves the upload without a bearer header until it expires (`media.url_ttl`).
    url: String,
    /// As sniffed from the bytes.
    content_type: String,
    size: u64,
    /// Hex SHA-256 of the bytes as stored (images: after their metadata was removed).
    sha256: String,
    filename: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
}

impl From<Stored> for Uploaded {
    fn from(Stored { media, url }: Stored) -> Self {
        Self {
            id: media.id,
            url,
            content_type: media.content_type,
            size: media.size,
            sha256: media.sha256,
            filename: media.filename,
            width: media.width,
            height: media.height,
        }
    }
}

/// Uploads a file to a room, for its messages to attach (`{"attachments":[{"media":id}]}`).
/// The body is the file itself with its `Content-Type`, or `multipart/form-data` whose first
/// file part is taken (its name and type stand in for `filename` and `Content-Type`).
#[utoipa::path(post, path = "/v1/rooms/{id}/media", params(UploadQuery), security(("bearer" = [])),
    request_body(content((Vec<u8> = "application/octet-stream"), (Vec<u8> = "multipart/form-data"))),
    responses((status = 201, body = Uploaded), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub(crate) async fn upload(
    State(rooms): State<Rooms>,
    State(uploads): State<Uploads>,
    AuthUser(user): AuthUser,
    Path(room): Path<String>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    rooms.of_member(&room, &user).await?;
    let declared = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let stored = if declared.as_deref().is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data")) {
        let mut form = Multipart::from_request(request, &()).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut file = loop {
            match form.next_field().await.map_err(|e| ApiError::bad_request(e.body_text()))? {
                Some(field) if field.file_name().is_some() => break field,
                Some(_) => continue,
                None => return Err(ApiError::bad_request("the form has no file part")),
            }
        };
        let filename = clean_filename(query.filename.as_deref().or(file.file_name()));
        let declared = file.content_type().map(str::to_owned);
        uploads.upload(&user, &room, &filename, declared.as_deref(), &mut file).await?
    } else {
        let filename = clean_filename(query.filename.as_deref());
        uploads.upload(&user, &room, &filename, declared.as_deref(), request.into_body().into_data_stream()).await?
    };
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// The last path segment of `name`, without control characters, at most 255 characters.
fn clean_filename(name: Option<&str>) -> String {
    let name = name.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let name: String = name.chars().filter(|c| !c.is_control()).take(MAX_FILENAME).collect();
    match name.trim() {
        "" | "." | ".." => "upload".to_owned(),
        name => name.to_owned(),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Signature {
    /// Expiry of a signed URL, seconds since the epoch.
    exp: Option<i64>,
    /// The server's signature of the id and `exp`.
    sig: Option<String>,
}

/// The upload for a member of its room (bearer), or for whoever holds its signed URL.
async fn readable(
    uploads: &Uploads,
    id: &str,
    user: Option<AuthUser>,
    signature: Signature,
) -> Result<Media, ApiError> {
    match (user, signature) {
        (_, Signature { exp: Some(expires), sig: Some(sig) }) => Ok(uploads.by_signature(id, expires, &sig).await?),
        (Some(AuthUser(user)), _) => Ok(uploads.for_member(id, &user).await?),
        (None, _) => Err(ApiError::unauthorized("missing bearer token or signed URL")),
    }
}

/// The upload's bytes; `Range` gives 206 with the part asked for.
#[utoipa::path(get, path = "/v1/media/{id}", params(Signature), security(("bearer" = []), ()),
    responses((status = 200, description = "the upload's bytes, typed as sniffed at upload", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "the range asked for", content_type = "*/*", body = Vec<u8>), (status = 304, description = "not modified"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 416, description = "no such range")))]
pub(crate) async fn download(
    State(uploads): State<Uploads>,
    user: Option<AuthUser>,
    Path(id): Path<String>,
    ApiQuery(signature): ApiQuery<Signature>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let media = readable(&uploads, &id, user, signature).await?;
    let etag = format!("\"{}\"", media.sha256);
    let mut response =
        if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|tags| {
            tags.split(',').any(|tag| tag.trim().trim_start_matches("W/") == etag || tag.trim() == "*")
        }) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|range| byte_range(range, media.size)) {
                Some(None) => {
                    let mut refused = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                    refused.headers_mut().insert(header::CONTENT_RANGE, value(&format!("bytes */{}", media.size)));
                    return Ok(refused);
                }
                Some(Some(range)) => {
                    let bytes = uploads.bytes(&media, Some(range.clone())).await?;
                    let mut partial =
                        (StatusCode::PARTIAL_CONTENT, Body::from_stream(bytes.map_err(std::io::Error::other)))
                            .into_response();
                    let content_range = format!("bytes {}-{}/{}", range.start, range.end - 1, media.size);
                    partial.headers_mut().insert(header::CONTENT_RANGE, value(&content_range));
                    partial.headers_mut().insert(header::CONTENT_LENGTH, value(&(range.end - range.start).to_string()));
                    partial
                }
                None => {
                    let bytes = uploads.bytes(&media, None).await?;
                    let mut whole = Body::from_stream(bytes.map_err(std::io::Error::other)).into_response();
                    whole.headers_mut().insert(header::CONTENT_LENGTH, value(&media.size.to_string()));
                    whole
                }
            }
        };
    let disposition = if safe_inline(&media.content_type) { "inline" } else { "attachment" };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, value(&etag));
    headers.insert(header::CONTENT_TYPE, value(&media.content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    headers.insert(header::CONTENT_DISPOSITION, value(&content_disposition(disposition, &media.filename)));
    Ok(response)
}

/// `Content-Disposition` with the name as RFC 6266 carries any character (`filename*`), and an
/// ASCII fallback.
fn content_disposition(disposition: &str, filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The one byte range of `header` (`bytes=a-b`, `bytes=a-`, `bytes=-n`) within `size` bytes, as
/// a half-open range; `None` when it cannot be served. Several ranges are not served.
fn byte_range(header: &str, size: u64) -> Option<Range<u64>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.trim().split_once('-')?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok()?;
            size.saturating_sub(suffix)..size
        }
        (start, "") => start.parse().ok()?..size,
        (start, end) => start.parse().ok()?..end.parse::<u64>().ok()?.saturating_add(1).min(size),
    };
    (range.start < range.end && range.start < size).then_some(range)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ThumbnailQuery {
    /// Wanted width in pixels; the thumbnail fits the box and is never larger than the image.
    width: Option<u32>,
    height: Option<u32>,
    exp: Option<i64>,
    sig: Option<String>,
}

/// A smaller copy of an image upload (JPEG, or PNG when it has transparency).
#[utoipa::path(get, path = "/v1/media/{id}/thumbnail", params(ThumbnailQuery), security(("bearer" = []), ()),
    responses((status = 200, content((Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"))), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub(crate) async fn thumbnail(
    State(uploads): State<Uploads>,
    user: Option<AuthUser>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ThumbnailQuery>,
) -> Result<Response, ApiError> {
    let media = readable(&uploads, &id, user, Signature { exp: query.exp, sig: query.sig }).await?;
    let (width, height) = (query.width.unwrap_or(320), query.height.unwrap_or(320));
    let (bytes, content_type) = uploads.thumbnail(&media, width, height).await?;
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, "sandbox"),
        (header::CACHE_CONTROL, "private, max-age=3600"),
    ];
    Ok((headers, bytes).into_response())
}

/// Deletes an upload no message shows yet; only its uploader may.
#[utoipa::path(delete, path = "/v1/media/{id}", security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_media(
    State(uploads): State<Uploads>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    uploads.delete(&id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_within_the_file() {
        assert_eq!(byte_range("bytes=0-99", 1000), Some(0..100));
        assert_eq!(byte_range("bytes=900-", 1000), Some(900..1000));
        assert_eq!(byte_range("bytes=-10", 1000), Some(990..1000));
        assert_eq!(byte_range("bytes=990-5000", 1000), Some(990..1000));
        assert_eq!(byte_range("bytes=1000-", 1000), None);
        assert_eq!(byte_range("bytes=5-1", 1000), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(byte_range("items=0-1", 1000), None);
    }

    #[test]
    fn file_names_are_names_only() {
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_filename(Some("C:\\x\\report.pdf")), "report.pdf");
        assert_eq!(clean_filename(Some("a\u{0}b\nc.txt")), "abc.txt");
        assert_eq!(clean_filename(Some("..")), "upload");
        assert_eq!(clean_filename(None), "upload");
        assert_eq!(
            content_disposition("inline", "é \"x\".png"),
            "inline; filename=\"_ _x_.png\"; filename*=UTF-8''%C3%A9%20%22x%22.png"
        );
    }
}
