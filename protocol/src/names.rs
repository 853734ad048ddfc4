//! User and room names: `[a-z0-9_.-]{1,64}`, so a name is always exactly one topic level.

use std::fmt;

/// Why a string is not a valid user or room name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a name is 1 to 64 characters of a-z, 0-9, '_', '.', '-', and not '.' or '..'")]
pub struct NameError;

/// A validated user or room name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Validates `raw` against the name grammar.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if is_valid(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(NameError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True when `raw` follows the name grammar. `.` and `..` are refused: as a path segment (an
/// HTTP route, a file name) they mean something else.
pub fn is_valid(raw: &str) -> bool {
    (1..=64).contains(&raw.len()) && raw != "." && raw != ".." && raw.bytes().all(is_name_byte)
}

/// True when some name starts with `raw` (the empty string included): a search by prefix.
pub fn is_prefix(raw: &str) -> bool {
    raw.len() <= 64 && raw.bytes().all(is_name_byte)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
}

/// The grammar as an OpenAPI (ECMA-262) pattern without lookaround, which schema-driven
/// clients and fuzzers can generate from: 1 to 64 characters, and not `.` or `..`.
pub const NAME_PATTERN: &str = r"^([a-z0-9_-][a-z0-9_.-]{0,63}|\.[a-z0-9_-][a-z0-9_.-]{0,62}|\.\.[a-z0-9_.-]{1,62})$";

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(NAME_PATTERN))
            .min_length(Some(1))
            .max_length(Some(64))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Name {}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Name::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar_and_nothing_else() {
        for good in ["a", "alice", "room_1.x-y", "...", ".a", &"z".repeat(64)] {
            assert!(is_valid(good), "{good}");
        }
        for bad in ["", "Alice", "a/b", "+", "#", "a b", "é", &"z".repeat(65), "$sys", ".", ".."] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn the_schema_pattern_says_what_the_grammar_says() {
        let pattern = regex::Regex::new(NAME_PATTERN).unwrap();
        let samples = ["a", ".", "..", "...", ".a", "..a", "a.", "a..", "_", "-", "A", "a/b", "", "é", "$x"];
        let long = ["a".repeat(64), "a".repeat(65), ".".repeat(64), format!("..{}", "b".repeat(62))];
        for sample in samples.iter().copied().chain(long.iter().map(String::as_str)) {
            assert_eq!(pattern.is_match(sample), is_valid(sample), "{sample:?}");
        }
    }
}
