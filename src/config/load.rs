//! The mechanics of loading: `KEYGATE_*` variables laid over the parsed
//! YAML, and deserialization that reports every type error with its field
//! path instead of stopping at the first. Reads no file and no environment
//! itself: `Config::from_yaml` hands it both.

use serde_json::{Map, Value};

use super::{Config, FieldError, QuotaConfig, TlsConfig};

/// Parses YAML text into a tree of plain values (the same tree JSON has:
/// config keys are strings). The error carries the line and column but no
/// snippet of the text, which may hold a password in a URL.
pub(super) fn parse_yaml(text: &str) -> Result<Value, String> {
    let options = serde_saphyr::options! { with_snippet: false, crop_radius: 0 };
    match serde_saphyr::from_str_with_options::<Option<Value>>(text, options) {
        Ok(value) => Ok(value.unwrap_or(Value::Null)),
        Err(e) => Err(e.to_string()),
    }
}

/// The default configuration with every optional section present: the
/// map of field paths that `KEYGATE_*` variables can set.
fn shape() -> Value {
    let mut shape = Config::default();
    shape.proxy.tls = Some(TlsConfig::default());
    shape.admin.tls = Some(TlsConfig::default());
    shape.proxy.key_query_param = Some(String::new());
    shape.upstream.ca_file = Some(String::new());
    shape.limits.default_per_key = Some(QuotaConfig { requests: 0, per_seconds: 0 });
    shape.telemetry.otlp_endpoint = Some(String::new());
    shape.proxy.identity_token =
        Some(super::IdentityTokenConfig { signing_key_file: Some(String::new()), ..Default::default() });
    super::authz::shape(&mut shape.authz);
    serde_json::to_value(shape).unwrap_or(Value::Null)
}

/// Sets each leaf of the shape whose `KEYGATE_<PATH>` variable is present.
/// Values are read as YAML scalars (or flow sequences) except where the field
/// is a string, which takes the text as it is.
pub(super) fn apply_env(value: &mut Value, env: impl IntoIterator<Item = (String, String)>) -> Vec<FieldError> {
    let mut leaves = Vec::new();
    collect_leaves(&shape(), &mut Vec::new(), &mut leaves);
    let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("KEYGATE_")).collect();
    let mut errors = Vec::new();
    for (path, is_string) in leaves {
        let name = format!("KEYGATE_{}", path.join("_").to_ascii_uppercase());
        let Some((_, raw)) = env.iter().find(|(k, _)| *k == name) else { continue };
        let parsed = if is_string {
            Value::String(raw.clone())
        } else {
            match parse_yaml(raw) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(FieldError { path: path.join("."), message: format!("{name} is not valid: {e}") });
                    continue;
                }
            }
        };
        set_path(value, &path, parsed);
    }
    errors
}

fn collect_leaves(value: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, bool)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                collect_leaves(v, path, out);
                path.pop();
            }
        }
        other => out.push((path.clone(), other.is_string())),
    }
}

fn set_path(value: &mut Value, path: &[String], leaf: Value) {
    let mut node = value;
    for (i, key) in path.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        if i + 1 == path.len() {
            map.insert(key.clone(), leaf);
            return;
        }
        node = map.entry(key.clone()).or_insert(Value::Null);
    }
}

/// Deserializes, and on each error records it with its path, removes the
/// offending field and tries again, so every type error is reported at once.
pub(super) fn deserialize_collecting(mut value: Value, errors: &mut Vec<FieldError>) -> Config {
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
            Ok(config) => return config,
            Err(e) => {
                let segments = path_segments(e.path());
                let message = e.inner().to_string();
                let unknown = message.starts_with("unknown field");
                let mut path = segments.clone();
                if unknown {
                    if let Some(field) = message.split('`').nth(1) {
                        if path.last().map(|s| s.as_str()) != Some(field) {
                            path.push(field.to_owned());
                        }
                    }
                }
                let shown = display_path(&path);
                errors.push(FieldError { path: if shown.is_empty() { "(file)".into() } else { shown }, message });
                if path.is_empty() || !remove_path(&mut value, &path) {
                    break;
                }
            }
        }
    }
    Config::default()
}

fn path_segments(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for s in path {
        if !s.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(s);
    }
    out
}

fn remove_path(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut node = value;
    for seg in parents {
        node = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(i) => match (node, i.parse::<usize>()) {
                (Value::Array(seq), Ok(i)) if i < seq.len() => &mut seq[i],
                _ => return false,
            },
            None => match node {
                Value::Object(map) => match map.get_mut(seg.as_str()) {
                    Some(v) => v,
                    None => return false,
                },
                _ => return false,
            },
        };
    }
    match (node, last.strip_prefix('[').and_then(|s| s.strip_suffix(']'))) {
        (Value::Array(seq), Some(i)) => match i.parse::<usize>() {
            Ok(i) if i < seq.len() => {
                seq.remove(i);
                true
            }
            _ => false,
        },
        (Value::Object(map), None) => map.remove(last.as_str()).is_some(),
        _ => false,
    }
}
