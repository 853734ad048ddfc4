//! The server's VAPID key (RFC 8292): a P-256 key that identifies Roost to Web Push services.
//! Browsers subscribe with its public half; every push request is signed with the private half.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::SecretKey;
use secrecy::{ExposeSecret, SecretString};

/// Why a VAPID key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("not a VAPID private key (base64url of a 32-byte P-256 scalar)")]
pub struct VapidKeyError;

/// A VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    secret: SecretKey,
}

impl VapidKey {
    /// A fresh key.
    pub fn generate() -> Self {
        Self { secret: SecretKey::random(&mut rand::rngs::OsRng) }
    }

    /// The key from its private scalar, base64url as [`VapidKey::to_private`] writes it.
    pub fn from_private(encoded: &SecretString) -> Result<Self, VapidKeyError> {
        let bytes = URL_SAFE_NO_PAD.decode(encoded.expose_secret().trim()).map_err(|_| VapidKeyError)?;
        Ok(Self { secret: SecretKey::from_slice(&bytes).map_err(|_| VapidKeyError)? })
    }

    /// The private scalar, base64url: what to keep, and what `push.webpush.vapid_private_key` takes.
    pub fn to_private(&self) -> SecretString {
        SecretString::from(URL_SAFE_NO_PAD.encode(self.secret.to_bytes()))
    }

    /// The public key as browsers take it (`applicationServerKey`): the uncompressed point,
    /// base64url.
    pub fn public(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.public_key().to_encoded_point(false).as_bytes())
    }

    /// The `Authorization` of a push request to a push service at `origin` (RFC 8292):
    /// `vapid t=<JWT>, k=<public key>`, the JWT signed ES256 with `aud` = `origin`, `exp` =
    /// `expires` (seconds since the epoch; push services refuse more than 24 h ahead) and `sub`
    /// = `subject`, the contact of who runs this server (`mailto:` or `https:`).
    pub fn authorization(&self, origin: &str, expires: i64, subject: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": origin, "exp": expires, "sub": subject});
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature: Signature = SigningKey::from(&self.secret).sign(signing_input.as_bytes());
        format!("vapid t={signing_input}.{}, k={}", URL_SAFE_NO_PAD.encode(signature.to_bytes()), self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_key_is_the_same_key() {
        let key = VapidKey::generate();
        let again = VapidKey::from_private(&key.to_private()).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(URL_SAFE_NO_PAD.decode(key.public()).unwrap().len(), 65, "uncompressed P-256 point");
        assert!(VapidKey::from_private(&SecretString::from("not base64!")).is_err());
        assert!(VapidKey::from_private(&SecretString::from(URL_SAFE_NO_PAD.encode([0u8; 32]))).is_err(), "zero");
    }

    #[test]
    fn an_authorization_is_a_jwt_for_the_origin_that_the_public_key_verifies() {
        use p256::ecdsa::signature::Verifier;
        let key = VapidKey::generate();
        let header = key.authorization("https://push.example:8443", 1_900_000_000, "mailto:ops@example.org");
        let (token, public) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        assert_eq!(public, key.public());
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(signed.split_once('.').unwrap().1).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"aud": "https://push.example:8443", "exp": 1_900_000_000, "sub": "mailto:ops@example.org"})
        );
        let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(public).unwrap()).unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        assert!(verifying.verify(signed.as_bytes(), &signature).is_ok());
    }
}
