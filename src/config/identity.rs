//! `proxy.identity_token`: the signed identity JWT the upstream gets in
//! `X-Keygate-Identity` (docs/proxy.md#signed-identity). Present = on.
//! Only values and their checks here; signing is `crate::identity`.

use serde::{Deserialize, Serialize};

use super::FieldError;

/// Longest token lifetime: a day. Short lifetimes are the point.
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// Most allowlisted metadata keys.
const MAX_METADATA_KEYS: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityTokenConfig {
    /// Lifetime of a token (`exp` − `iat`), 1–86400 seconds. A token is
    /// signed again once it is older than half of this, so the upstream
    /// always gets one that is valid for at least `ttl_seconds / 2`.
    pub ttl_seconds: u64,
    /// Keys of a key's `metadata` copied into the token's `metadata` claim;
    /// any other metadata never leaves the gateway.
    pub metadata: Vec<String>,
    /// Ed25519 private key, PEM (PKCS#8, `openssl genpkey -algorithm
    /// ed25519`). Unset: a key is generated once and kept in the store, so
    /// every replica signs with the same one (`POST /v1/identity/rotate`
    /// replaces it).
    pub signing_key_file: Option<String>,
}

impl Default for IdentityTokenConfig {
    fn default() -> Self {
        IdentityTokenConfig { ttl_seconds: 60, metadata: Vec::new(), signing_key_file: None }
    }
}

impl IdentityTokenConfig {
    /// Every problem with the section, each under its field. Reads the key
    /// file, so that a file that will not load is refused with the rest of
    /// the config (and never half-applied by a reload).
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        let mut err = |field: &str, message: String| {
            errors.push(FieldError { path: format!("proxy.identity_token.{field}"), message });
        };
        if !(1..=MAX_TTL_SECONDS).contains(&self.ttl_seconds) {
            err("ttl_seconds", format!("must be between 1 and {MAX_TTL_SECONDS}, got {}", self.ttl_seconds));
        }
        if self.metadata.len() > MAX_METADATA_KEYS {
            err("metadata", format!("at most {MAX_METADATA_KEYS} keys"));
        }
        for (i, key) in self.metadata.iter().enumerate() {
            if key.is_empty() || key.len() > 128 {
                err(&format!("metadata[{i}]"), "must be 1-128 characters".into());
            }
        }
        if let Some(file) = &self.signing_key_file {
            if let Err(e) = crate::identity::SigningKey::from_pem_file(file) {
                err("signing_key_file", e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn paths(text: &str) -> Vec<String> {
        match Config::from_yaml(text, Vec::new()) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
        }
    }

    #[test]
    fn off_by_default_on_when_present() {
        assert_eq!(Config::from_yaml("", Vec::new()).expect("valid").proxy.identity_token, None);
        let c = Config::from_yaml("proxy:\n  identity_token: {}\n", Vec::new()).expect("valid");
        assert_eq!(c.proxy.identity_token.map(|t| t.ttl_seconds), Some(60));
        let env = vec![("KEYGATE_PROXY_IDENTITY_TOKEN_TTL_SECONDS".to_string(), "30".to_string())];
        let c = Config::from_yaml("", env).expect("valid");
        assert_eq!(c.proxy.identity_token.map(|t| t.ttl_seconds), Some(30));
    }

    #[test]
    fn errors_name_the_field() {
        let errors = paths("proxy:\n  identity_token: { ttl_seconds: 0, metadata: [''] }\n");
        assert!(
            errors.iter().any(|e| e.starts_with("proxy.identity_token.ttl_seconds: must be between")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("proxy.identity_token.metadata[0]")), "{errors:?}");
        let errors = paths("proxy:\n  identity_token: { signing_key_file: /nonexistent/key.pem }\n");
        assert!(errors[0].starts_with("proxy.identity_token.signing_key_file: cannot read"), "{errors:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("key.pem");
        // A certificate's key of another kind (P-256) is not an Ed25519 key.
        let other = rcgen::KeyPair::generate().expect("key pair");
        std::fs::write(&file, other.serialize_pem()).expect("write");
        let errors = paths(&format!("proxy:\n  identity_token: {{ signing_key_file: {} }}\n", file.display()));
        assert!(errors[0].contains("not an Ed25519"), "{errors:?}");
        std::fs::write(&file, "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n").expect("write");
        let errors = paths(&format!("proxy:\n  identity_token: {{ signing_key_file: {} }}\n", file.display()));
        assert!(errors[0].starts_with("proxy.identity_token.signing_key_file"), "{errors:?}");
    }
}
