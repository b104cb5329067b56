//! One Ed25519 signing key (ring): loaded from a PEM file or PKCS#8 bytes
//! from the store, or generated; its `kid` (the RFC 7638 thumbprint of its
//! public JWK, so every replica names the same key the same way) and its
//! public JWK for the JWKS.
//!
//! The private half never leaves this type: `Debug` shows the `kid` only,
//! and nothing here formats the key's bytes into an error or a log line.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde_json::{json, Value};

pub struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
    /// `base64url({"alg":"EdDSA","typ":"JWT","kid":…})`, the first part of
    /// every token this key signs.
    header: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from PKCS#8 DER (v1, as OpenSSL writes it, or v2, as ring
    /// generates it).
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| "not an Ed25519 private key (PKCS#8)".to_owned())?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        // RFC 7638: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()));
        let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid }).to_string());
        Ok(SigningKey { kid, pair, header })
    }

    /// A key from a PEM file holding a PKCS#8 private key (`openssl genpkey
    /// -algorithm ed25519`). The error names the file, never its content.
    pub fn from_pem_file(path: &str) -> Result<SigningKey, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
        match PrivateKeyDer::from_pem_slice(&pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => {
                Self::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| format!("{path:?}: {e}"))
            }
            Ok(_) => Err(format!("{path:?}: not an Ed25519 private key (PKCS#8); found another kind of key")),
            Err(_) => Err(format!("{path:?}: no PEM private key (-----BEGIN PRIVATE KEY-----) could be read")),
        }
    }

    /// A new random key and its PKCS#8 bytes (for the store).
    pub fn generate() -> Result<(SigningKey, Vec<u8>), String> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| "the system random generator failed".to_owned())?;
        let der = document.as_ref().to_vec();
        Ok((Self::from_pkcs8(&der)?, der))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The encoded JOSE header of this key's tokens.
    pub(super) fn header(&self) -> &str {
        &self.header
    }

    /// The signature of `message` (64 bytes).
    pub(super) fn sign(&self, message: &[u8]) -> ring::signature::Signature {
        self.pair.sign(message)
    }

    /// The public key as a JWK (RFC 8037), as the JWKS lists it.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.1/A.3: this private key's thumbprint.
        let seed = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49,
            0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
        ];
        // PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410).
        let mut der =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend_from_slice(&seed);
        let key = SigningKey::from_pkcs8(&der).expect("key");
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(key.jwk()["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    }

    #[test]
    fn debug_shows_the_kid_only() {
        let (key, der) = SigningKey::generate().expect("key");
        let shown = format!("{key:?}");
        assert!(shown.contains(key.kid()));
        assert!(!shown.contains(&URL_SAFE_NO_PAD.encode(&der[16..48])), "{shown}");
        assert_eq!(SigningKey::from_pkcs8(&der).expect("again").kid(), key.kid());
    }
}
