//! Finding the API key in a request: `CredentialSources::extract` on an
//! arbitrary `HeaderMap` and URI must never panic, must return a key that
//! is exactly what the request carried, and `strip` plus the upstream URI
//! rewrite must leave no copy of the credential for the upstream.

#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Uri;
use keygate::proxy::auth::{CredentialError, CredentialSources};
use keygate::proxy::forward::upstream_uri;
use keygate::proxy::routing::Upstream;
use libfuzzer_sys::fuzz_target;

// Input, one item a line (so seed files read like a request):
//
// ```text
// authorization,x-api-key;api_key      <- proxy.key_headers ; key_query_param
// /path?api_key=kg_live_...            <- the request target
// Authorization: Bearer kg_live_...    <- headers, `name: value`
// ```
//
// Header values are raw bytes: anything `HeaderValue` takes, non-UTF-8
// included.
fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let config = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let (names, param) = config.split_once(';').unwrap_or((&config, ""));
    let names: Vec<String> = names.split(',').map(str::to_owned).collect();
    let param = Some(param).filter(|p| !p.is_empty());
    let Ok(sources) = CredentialSources::new(&names, param) else { return };
    let target = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let value = line[colon + 1..].strip_prefix(b" ").unwrap_or(&line[colon + 1..]);
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) else {
            continue;
        };
        headers.append(name, value);
    }
    let uri = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    assert!(!sources.missing_detail().is_empty());

    let credential = match sources.extract(&headers, &uri) {
        Ok(c) => c,
        Err(CredentialError::Missing) => {
            assert!(sources.query_param_to_strip(Default::default()).is_none());
            return;
        }
        Err(e) => {
            assert_ne!(e.refusal().code(), "", "refusal without a code");
            return;
        }
    };
    let key = credential.key;
    assert!(!key.is_empty(), "an empty key was accepted");

    // The key is one of the values sent, as sent (bearer tokens and header
    // values trimmed of blanks), and every value sent agrees with it.
    let carried = headers.values().any(|v| contains(v.as_bytes(), key))
        || uri.query().is_some_and(|q| contains(q.as_bytes(), key));
    assert!(carried, "extracted a key the request does not carry");

    // After `strip`, the configured headers give no key any more, and the
    // upstream URI has no key parameter left.
    let mut stripped = headers.clone();
    sources.strip(&mut stripped, credential.found_in);
    let bare = Uri::from_static("/");
    match sources.extract(&stripped, &bare) {
        Err(CredentialError::Missing) => {}
        other => panic!("credential left after strip: {:?}", other.map(|c| c.key)),
    }
    if let Some(param) = sources.query_param_to_strip(credential.found_in) {
        let upstream = Upstream::parse("http://upstream:8080/base").expect("upstream");
        if let Ok(rewritten) = upstream_uri(&upstream, uri.clone(), Some(param)) {
            let leaked = rewritten
                .query()
                .into_iter()
                .flat_map(|q| q.split('&'))
                .any(|pair| pair.split_once('=').map_or(pair, |(n, _)| n) == param);
            assert!(!leaked, "key parameter {param:?} left in {rewritten}");
        }
    }
});

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
