//! HS256 access tokens: issue and verify; refresh tokens are opaque random strings.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use roost_protocol::Claims;
use secrecy::{ExposeSecret, SecretString};

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    /// Why, in words safe to show the client (the library's own error stays in the logs).
    #[error("token invalid: {0}")]
    Invalid(&'static str),
    #[error("token belongs to another user")]
    WrongUser,
}

/// How far ahead of this server's clock a token's `iat` may be (another node's clock).
const CLOCK_SKEW_SECS: i64 = 60;

/// Signs and verifies access tokens with one HS256 secret.
#[derive(Clone)]
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenService {
    pub fn new(secret: &SecretString) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { encoding: EncodingKey::from_secret(key), decoding: DecodingKey::from_secret(key), validation }
    }

    /// An access token for `user`, valid for `ttl_secs` seconds from now.
    pub fn issue(&self, user: &str, ttl_secs: u64) -> String {
        self.sign(user, ttl_secs, None)
    }

    /// A token for the bot `name`, carrying `token_id`: it works while the bot's live token
    /// id is `token_id` (see [`crate::MembershipView::admits`]).
    pub fn issue_bot(&self, name: &str, token_id: &str, ttl_secs: u64) -> String {
        self.sign(name, ttl_secs, Some(token_id.to_owned()))
    }

    fn sign(&self, user: &str, ttl_secs: u64, bot: Option<String>) -> String {
        let iat = roost_protocol::now_millis() / 1000;
        let claims = Claims { sub: user.to_owned(), iat, exp: iat.saturating_add(ttl_secs as i64), bot };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Verifies signature, algorithm and expiry; returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let claims =
            decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::InvalidSignature => TokenError::Invalid("bad signature"),
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        TokenError::Invalid("algorithm not allowed")
                    }
                    ErrorKind::ImmatureSignature => TokenError::Invalid("not valid yet"),
                    ErrorKind::MissingRequiredClaim(_) => TokenError::Invalid("a required claim is missing"),
                    _ => TokenError::Invalid("malformed"),
                }
            })?;
        if claims.iat > roost_protocol::now_millis() / 1000 + CLOCK_SKEW_SECS {
            return Err(TokenError::Invalid("issued in the future"));
        }
        Ok(claims)
    }

    /// Verifies `token` and that it was issued to `user`.
    pub fn verify_for(&self, user: &str, token: &str) -> Result<Claims, TokenError> {
        let claims = self.verify(token)?;
        if claims.sub == user {
            Ok(claims)
        } else {
            Err(TokenError::WrongUser)
        }
    }
}

/// A fresh random secret of 32 bytes, hex encoded: signing keys and refresh tokens.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(secret: &str) -> TokenService {
        TokenService::new(&SecretString::from(secret.to_owned()))
    }

    #[test]
    fn issued_token_verifies_for_its_user_only() {
        let tokens = service("s3cret");
        let token = tokens.issue("alice", 60);
        assert_eq!(tokens.verify_for("alice", &token).unwrap().sub, "alice");
        assert!(matches!(tokens.verify_for("bob", &token), Err(TokenError::WrongUser)));
    }

    #[test]
    fn other_key_and_alg_none_are_refused() {
        let token = service("one").issue("alice", 60);
        assert!(matches!(service("two").verify(&token), Err(TokenError::Invalid(_))));
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", token.split('.').nth(1).unwrap());
        assert!(matches!(service("one").verify(&unsigned), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn a_token_from_the_future_or_not_yet_valid_is_refused() {
        let key = EncodingKey::from_secret(b"k");
        let now = roost_protocol::now_millis() / 1000;
        let sign = |claims: serde_json::Value| encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        let future = sign(serde_json::json!({"sub": "alice", "iat": now + 3600, "exp": now + 7200}));
        assert!(matches!(service("k").verify(&future), Err(TokenError::Invalid("issued in the future"))));
        let early = sign(serde_json::json!({"sub": "alice", "iat": now, "nbf": now + 3600, "exp": now + 7200}));
        assert!(matches!(service("k").verify(&early), Err(TokenError::Invalid("not valid yet"))));
        let fine = sign(serde_json::json!({"sub": "alice", "iat": now, "nbf": now, "exp": now + 60}));
        assert_eq!(service("k").verify(&fine).unwrap().sub, "alice");
    }

    #[test]
    fn expired_token_is_refused() {
        let token = service("k").issue("alice", 0);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(matches!(service("k").verify(&token), Err(TokenError::Expired)));
    }
}
