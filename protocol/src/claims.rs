//! JWT claims of Roost access tokens.

use serde::{Deserialize, Serialize};

/// Claims of an access token: `sub` is the user name the token authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// A bot's token: its id, valid while the bot's live token has it (revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<String>,
}
