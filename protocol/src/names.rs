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
    (1..=64).contains(&raw.len())
        && raw != "."
        && raw != ".."
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
}

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
}
