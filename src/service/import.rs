//! Key import: keys made elsewhere, given as their plaintext secret or as
//! the sha256 of it, with any field a created key takes. Up to
//! [`MAX_IMPORT`] keys per call, written in one transaction; each key is
//! imported, answered as the key that already has its secret, or refused
//! on its own (by index), so one bad row does not sink the others.
//!
//! A secret is read with the proxy's own rules (`keys::format::classify`),
//! so nothing is imported that the gateway would refuse. The plaintext goes
//! no further than this module: the store gets its blake3 and sha256.

use std::collections::HashMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{CreateKey, Result, Service, ServiceError};
use crate::clock::now_ms;
use crate::keys::foreign::sha256;
use crate::keys::format::{self, FormatError, Shape};
use crate::keys::{KeyHash, Refusal, Secret};
use crate::store::{AuditContext, ImportOutcome, ImportedSecret, KeyRecord, NewImport, StoreError};

/// Most keys one import call takes.
pub const MAX_IMPORT: usize = 1_000;

/// The `code` of a key refused for a field of its own.
pub const INVALID: &str = "validation_failed";
/// The `code` of a key whose secret is taken: by a key of another account,
/// by a rotated-out secret, or by an earlier key of the same call.
pub const CONFLICT: &str = "conflict";
/// The `code` of a key a confined token may not give the limits it asks for.
pub const FORBIDDEN: &str = "forbidden";

/// How an imported key's secret is given.
pub enum Source {
    Secret(Secret),
    Sha256(KeyHash),
}

/// One key of an import, read from its JSON.
pub struct ImportItem {
    pub source: Source,
    /// The create fields; `account_id` is the call's.
    pub fields: CreateKey,
}

/// Why one key of an import was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({ "index": 3, "code": "validation_failed", "detail": "permission: unknown variant `admin`, expected `read` or `write`", "field": "permission" }))]
pub struct ImportFailure {
    /// Position of the key in `keys`, from 0.
    pub index: usize,
    /// `validation_failed`, `conflict` or `forbidden`.
    pub code: &'static str,
    pub detail: String,
    /// The field of the key at fault (`permission`, `hash.value`), or null.
    #[schema(required = true)]
    pub field: Option<String>,
}

impl ImportFailure {
    fn new(index: usize, code: &'static str, field: Option<&str>, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let detail = match field {
            Some(f) if !detail.starts_with(f) => format!("{f}: {detail}"),
            _ => detail,
        };
        ImportFailure { index, code, detail, field: field.map(str::to_owned) }
    }

    /// A key refused for one of its fields.
    pub fn invalid(index: usize, field: &str, message: impl Into<String>) -> Self {
        ImportFailure::new(index, INVALID, Some(field), message)
    }

    pub fn forbidden(index: usize, message: impl Into<String>) -> Self {
        ImportFailure::new(index, FORBIDDEN, None, message)
    }
}

/// What an import did, each list in the order of `keys`.
#[derive(Debug)]
pub struct ImportReport {
    /// Index, record, and whether it was created now (false: the key that
    /// already had this secret).
    pub imported: Vec<(usize, KeyRecord, bool)>,
    pub failed: Vec<ImportFailure>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HashBody {
    algorithm: String,
    encoding: String,
    value: String,
}

/// Reads element `index` of an import's `keys`: `secret` or `hash`, and the
/// create fields. `account_id` is the call's, never the element's.
pub fn read_item(index: usize, account_id: &str, value: Value) -> std::result::Result<ImportItem, ImportFailure> {
    let Value::Object(mut map) = value else {
        return Err(ImportFailure::new(index, INVALID, None, "each key must be a JSON object"));
    };
    if map.contains_key("account_id") {
        return Err(ImportFailure::invalid(index, "account_id", "give account_id once, beside keys"));
    }
    let source = match (map.remove("secret"), map.remove("hash")) {
        (Some(Value::String(secret)), None) => Source::Secret(read_secret(index, secret)?),
        (Some(_), None) => return Err(ImportFailure::invalid(index, "secret", "must be a string")),
        (None, Some(hash)) => Source::Sha256(read_hash(index, hash)?),
        (Some(_), Some(_)) => {
            return Err(ImportFailure::new(index, INVALID, None, "give either secret or hash, not both"))
        }
        (None, None) => return Err(ImportFailure::new(index, INVALID, None, "secret or hash is required")),
    };
    map.insert("account_id".into(), Value::String(account_id.to_owned()));
    let fields = deserialize(index, "", Value::Object(map))?;
    Ok(ImportItem { source, fields })
}

/// A plaintext secret, by the proxy's rules.
fn read_secret(index: usize, secret: String) -> std::result::Result<Secret, ImportFailure> {
    let message = match format::classify(secret.as_bytes()) {
        Ok(_) => return Ok(Secret::new(secret)),
        Err(e) if e == FormatError::Checksum || secret.as_bytes().starts_with(format::KEYGATE_MARK) => {
            "looks like a keygate key (it starts with kg_ or has a keygate key's layout) but is not one: \
             its length, characters or checksum are wrong, and the gateway would refuse it"
        }
        Err(FormatError::Length) => "must be 16 to 256 characters",
        Err(_) => "must be printable ASCII without spaces or control characters",
    };
    Err(ImportFailure::invalid(index, "secret", message))
}

/// `{ "algorithm": "sha256", "encoding": "hex" | "base64", "value" }`.
fn read_hash(index: usize, hash: Value) -> std::result::Result<KeyHash, ImportFailure> {
    let body: HashBody = deserialize(index, "hash", hash)?;
    if body.algorithm != "sha256" {
        return Err(ImportFailure::invalid(index, "hash.algorithm", "only sha256 is supported"));
    }
    let value = body.value.trim();
    let bytes = match body.encoding.as_str() {
        // ASCII first: slicing by byte pairs must never cut a character.
        "hex" => (value.len() == 64 && value.is_ascii())
            .then(|| {
                (0..32).map(|i| u8::from_str_radix(&value[2 * i..2 * i + 2], 16).ok()).collect::<Option<Vec<u8>>>()
            })
            .flatten()
            .ok_or_else(|| ImportFailure::invalid(index, "hash.value", "must be 64 hexadecimal digits (a sha256)"))?,
        "base64" => {
            use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
            [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(value).ok())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    ImportFailure::invalid(index, "hash.value", "must be the base64 of 32 bytes (a sha256)")
                })?
        }
        _ => return Err(ImportFailure::invalid(index, "hash.encoding", "must be hex or base64")),
    };
    KeyHash::from_slice(&bytes)
        .ok_or_else(|| ImportFailure::invalid(index, "hash.value", "must be 32 bytes (a sha256)"))
}

/// Deserializes `value`, naming the field at fault under `prefix`.
fn deserialize<T: serde::de::DeserializeOwned>(
    index: usize,
    prefix: &str,
    value: Value,
) -> std::result::Result<T, ImportFailure> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let named = message
            .split('`')
            .nth(1)
            .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"));
        let field = match (path.as_str(), named) {
            (".", Some(name)) => name.to_owned(),
            (p, Some(name)) if message.starts_with("missing field") => format!("{}.{name}", p.trim_start_matches('.')),
            (".", None) => String::new(),
            (p, _) => p.to_owned(),
        };
        let field = match (prefix, field.as_str()) {
            ("", "") => None,
            ("", f) => Some(f.to_owned()),
            (p, "") => Some(p.to_owned()),
            (p, f) => Some(format!("{p}.{f}")),
        };
        ImportFailure::new(index, INVALID, field.as_deref(), message)
    })
}

impl Service {
    /// Imports the keys read by [`read_item`] (or refused there) into
    /// `account_id`, which must exist and have API access. A secret given
    /// twice in one call is imported once, the later ones refused.
    pub async fn import_keys(
        &self,
        account_id: &str,
        items: Vec<std::result::Result<ImportItem, ImportFailure>>,
        audit: &AuditContext,
    ) -> Result<ImportReport> {
        if items.is_empty() || items.len() > MAX_IMPORT {
            return Err(ServiceError::invalid(
                "keys",
                format!("must hold 1 to {MAX_IMPORT} keys; import more in several calls"),
            ));
        }
        let now = now_ms();
        let account = match self.store.get_account(account_id).await {
            Err(StoreError::NotFound) => return Err(ServiceError::invalid("account_id", "no such account")),
            other => other?,
        };
        if !account.api_access {
            return Err(ServiceError::Refused(Refusal::ApiAccessDisabled));
        }
        let mut failed = Vec::new();
        let mut imports = Vec::new();
        let mut indexes = Vec::new();
        // Each secret's sha256 (given or computed) and where it came first.
        let mut seen: HashMap<KeyHash, usize> = HashMap::new();
        for (index, item) in items.into_iter().enumerate() {
            let item = match item {
                Ok(item) => item,
                Err(failure) => {
                    failed.push(failure);
                    continue;
                }
            };
            let mut key = match self.new_key(item.fields, account.id.clone(), now) {
                Ok(key) => key,
                Err(ServiceError::Invalid { field, message }) => {
                    failed.push(ImportFailure::invalid(index, &field, message));
                    continue;
                }
                Err(other) => return Err(other),
            };
            let secret = match &item.source {
                Source::Secret(secret) => {
                    let text = secret.expose();
                    (key.prefix, key.preview) = match format::classify(text.as_bytes()) {
                        Ok(Shape::Keygate) => (secret.prefix().to_owned(), secret.preview()),
                        _ => (String::new(), format::foreign_preview(text)),
                    };
                    ImportedSecret::Plain { hash: secret.hash(), sha256: sha256(text.as_bytes()) }
                }
                Source::Sha256(sha) => {
                    // Nothing of the secret is known until its first use.
                    (key.prefix, key.preview) = (String::new(), "…".to_owned());
                    ImportedSecret::Sha256(*sha)
                }
            };
            if let Some(first) = seen.get(secret.sha256()) {
                let detail = format!("the same secret as key {first} of this call");
                failed.push(ImportFailure::new(index, CONFLICT, None, detail));
                continue;
            }
            seen.insert(*secret.sha256(), index);
            key.hash = match secret {
                ImportedSecret::Plain { hash, .. } => hash,
                ImportedSecret::Sha256(sha) => sha,
            };
            imports.push(NewImport { key, secret });
            indexes.push(index);
        }
        let outcomes =
            if imports.is_empty() { Vec::new() } else { self.store.import_keys(&account.id, &imports, audit).await? };
        let mut imported = Vec::with_capacity(outcomes.len());
        for (index, outcome) in indexes.into_iter().zip(outcomes) {
            match outcome {
                ImportOutcome::Created(record) => imported.push((index, record, true)),
                ImportOutcome::Existing(record) => imported.push((index, record, false)),
                ImportOutcome::Conflict(why) => failed.push(ImportFailure::new(index, CONFLICT, None, why)),
            }
        }
        if !imported.is_empty() {
            self.publish().await;
        }
        failed.sort_by_key(|f| f.index);
        let created = imported.iter().filter(|(_, _, created)| *created).count();
        tracing::info!(
            account_id = %account.id,
            created,
            existing = imported.len() - created,
            failed = failed.len(),
            "keys imported"
        );
        Ok(ImportReport { imported, failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(r: std::result::Result<ImportItem, ImportFailure>) -> (Option<String>, String) {
        match r {
            Ok(_) => panic!("read"),
            Err(f) => (f.field, f.detail),
        }
    }

    #[test]
    fn each_refusal_names_the_field_of_the_key() {
        let read = |v: Value| read_item(4, "acc_1", v);
        let base = |extra: Value| {
            let mut v = json!({ "name": "legacy", "permission": "read" });
            v.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            v
        };
        assert_eq!(field(read(base(json!({ "secret": "short" })))).0.as_deref(), Some("secret"));
        assert_eq!(
            field(read(base(json!({ "secret": "kg_live_0123456789abcdefghijklmno" })))).0.as_deref(),
            Some("secret")
        );
        let hex = |v: &str| base(json!({ "hash": { "algorithm": "sha256", "encoding": "hex", "value": v } }));
        assert_eq!(field(read(hex("abcd"))).0.as_deref(), Some("hash.value"));
        assert!(read(hex(&"ab".repeat(32))).is_ok());
        let b64 = |v: &str| base(json!({ "hash": { "algorithm": "sha256", "encoding": "base64", "value": v } }));
        assert!(read(b64("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")).is_ok());
        assert_eq!(field(read(b64("c2hvcnQ="))).0.as_deref(), Some("hash.value"));
        let md5 = base(json!({ "hash": { "algorithm": "md5", "encoding": "hex", "value": "x" } }));
        assert_eq!(field(read(md5)).0.as_deref(), Some("hash.algorithm"));
        let extra = base(json!({ "hash": { "algorithm": "sha256", "encoding": "hex", "value": "x", "salt": "y" } }));
        assert_eq!(field(read(extra)).0.as_deref(), Some("hash.salt"));
        let bad = base(json!({ "secret": "legacy-secret-0123456789", "permission": "admin" }));
        let (f, detail) = field(read(bad));
        assert_eq!(f.as_deref(), Some("permission"));
        assert!(detail.starts_with("permission: unknown variant"), "{detail}");
        assert_eq!(
            field(read(base(json!({ "secret": "legacy-secret-0123456789", "colour": 1 })))).0.as_deref(),
            Some("colour")
        );
        assert_eq!(field(read(base(json!({})))).0, None, "neither secret nor hash");
        assert_eq!(field(read(json!("a string"))).0, None);
        let elsewhere = base(json!({ "secret": "legacy-secret-0123456789", "account_id": "acc_2" }));
        assert_eq!(field(read(elsewhere)).0.as_deref(), Some("account_id"));
        let ok = read(base(json!({ "secret": "legacy-secret-0123456789" }))).expect("read");
        assert_eq!(ok.fields.account_id, "acc_1");
    }

    #[test]
    fn a_refusal_never_repeats_the_secret() {
        let secret = "legacy secret with spaces 0123456789";
        let f = read_item(0, "acc_1", json!({ "secret": secret, "name": "n", "permission": "read" }));
        let (_, detail) = field(f);
        assert!(!detail.contains("legacy secret"), "{detail}");
    }

    #[test]
    fn a_hex_hash_with_a_multibyte_character_is_refused_not_a_panic() {
        // 64 bytes, but "é" is two of them: byte pairs would cut it.
        let value = format!("a\u{e9}{}", "0".repeat(61));
        assert_eq!(value.len(), 64);
        let hash = json!({ "algorithm": "sha256", "encoding": "hex", "value": value });
        let f = read_item(0, "acc_1", json!({ "hash": hash, "name": "n", "permission": "read" }));
        assert_eq!(field(f).0.as_deref(), Some("hash.value"));
    }
}
