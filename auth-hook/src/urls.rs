//! Signed URLs: a link to one upload that works without a bearer header until it expires, for
//! what cannot send one (a browser's `<img>` and `<video>`).

use crate::tokens::hex;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Signs and checks `(media id, expiry)` pairs with a key of the server's.
#[derive(Clone)]
pub struct UrlSigner {
    key: Hmac<Sha256>,
}

impl UrlSigner {
    pub fn new(secret: &SecretString) -> Self {
        // its own key, derived from the token secret: a signature never doubles as anything else
        let mut derive = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("any key length");
        derive.update(b"roost signed media urls");
        let key = Hmac::new_from_slice(&derive.finalize().into_bytes()).expect("any key length");
        Self { key }
    }

    /// The signature of `id` until `expires` (seconds since the epoch), hex.
    pub fn sign(&self, id: &str, expires: i64) -> String {
        hex(&self.mac(id, expires).finalize().into_bytes())
    }

    /// Whether `signature` is ours for `id` and `expires`, and `expires` is not before `now`.
    pub fn verify(&self, id: &str, expires: i64, signature: &str, now: i64) -> bool {
        let Some(signature) = unhex(signature) else { return false };
        expires >= now && self.mac(id, expires).verify_slice(&signature).is_ok()
    }

    fn mac(&self, id: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = self.key.clone();
        mac.update(id.as_bytes());
        mac.update(b"\0");
        mac.update(expires.to_string().as_bytes());
        mac
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_id_until_it_expires() {
        let signer = UrlSigner::new(&SecretString::from("k".repeat(32)));
        let signature = signer.sign("m1", 1_000);
        assert!(signer.verify("m1", 1_000, &signature, 999));
        assert!(signer.verify("m1", 1_000, &signature, 1_000));
        assert!(!signer.verify("m1", 1_000, &signature, 1_001), "expired");
        assert!(!signer.verify("m2", 1_000, &signature, 0), "another upload");
        assert!(!signer.verify("m1", 2_000, &signature, 0), "a later expiry");
        assert!(!signer.verify("m1", 1_000, "zz", 0));
        let other = UrlSigner::new(&SecretString::from("j".repeat(32)));
        assert!(!other.verify("m1", 1_000, &signature, 0), "another server's key");
    }
}
