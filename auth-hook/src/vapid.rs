//! The server's VAPID key (RFC 8292): a P-256 key that identifies Roost to Web Push services.
//! Browsers subscribe with its public half; every push request is signed with the private half.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
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
}
