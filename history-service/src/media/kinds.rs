//! What an upload is: its type sniffed from its bytes, checked against what the sender declared
//! and what the server accepts.

/// Bytes enough to sniff any type we accept.
pub(crate) const SNIFF_BYTES: usize = 8192;

/// The types accepted when `media.allowed_types` is not set.
pub(crate) fn default_allowed() -> Vec<String> {
    [
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/ogg",
        "audio/x-wav",
        "audio/m4a",
        "audio/x-flac",
        "video/mp4",
        "video/webm",
        "video/quicktime",
        "application/pdf",
        "text/plain",
        "application/zip",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
    ]
    .map(String::from)
    .to_vec()
}

/// The type of the bytes that begin with `head`: sniffed, or plain text when it is UTF-8 with
/// no control characters but whitespace (`head` may end inside a character).
pub(crate) fn sniff(head: &[u8]) -> Option<&'static str> {
    if let Some(kind) = infer::get(head) {
        return Some(kind.mime_type());
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    let plain = !text.is_empty() && text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    plain.then_some("text/plain")
}

/// Whether the declared type and the sniffed one are of one family (`image/png` declared,
/// `image/jpeg` found passes; `text/html` found for `image/png` does not). A sender that knows
/// nothing (`application/octet-stream`, or no type) defers to the bytes.
pub(crate) fn agrees(declared: Option<&str>, sniffed: &str) -> bool {
    let essence = |mime: &str| mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match declared.map(essence).as_deref() {
        None | Some("" | "application/octet-stream") => true,
        Some(declared) => declared.split('/').next() == sniffed.split('/').next(),
    }
}

/// Types a browser may show in place (`Content-Disposition: inline`): media it renders
/// without running anything. Everything else downloads as an attachment.
pub(crate) fn safe_inline(content_type: &str) -> bool {
    let (family, _) = content_type.split_once('/').unwrap_or_default();
    matches!(family, "image" | "video" | "audio") && content_type != "image/svg+xml"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_decide() {
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff("h\u{e9}llo\n".as_bytes()), Some("text/plain"));
        assert_eq!(sniff(&"\u{e9}".as_bytes()[..1]), None, "a cut character and nothing else");
        assert_eq!(sniff(b"\0\x01\x02binary"), None);
        assert!(agrees(Some("image/png"), "image/jpeg"));
        assert!(!agrees(Some("image/png"), "text/plain"));
        assert!(agrees(Some("application/octet-stream"), "application/pdf"));
        assert!(agrees(Some("Application/PDF; q=1"), "application/pdf"));
        assert!(safe_inline("video/mp4") && !safe_inline("application/pdf") && !safe_inline("image/svg+xml"));
    }
}
