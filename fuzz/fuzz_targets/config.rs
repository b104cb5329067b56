//! Loading the configuration: `Config::from_yaml` on arbitrary text and
//! `KEYGATE_*` variables must never panic; every error names a field path
//! and a reason; and a config it accepts is accepted again, unchanged, after
//! a round trip through YAML.

#![no_main]

use keygate::config::Config;
use libfuzzer_sys::fuzz_target;

/// Variables the config reads, so that the fuzzer hits real overrides.
const VARS: [&str; 16] = [
    "KEYGATE_PROXY_LISTEN",
    "KEYGATE_PROXY_HEADER_READ_TIMEOUT_MS",
    "KEYGATE_PROXY_MAX_HEADER_BYTES",
    "KEYGATE_PROXY_KEY_HEADERS",
    "KEYGATE_PROXY_KEY_QUERY_PARAM",
    "KEYGATE_PROXY_TRUSTED_PROXIES",
    "KEYGATE_PROXY_TLS_CERT_FILE",
    "KEYGATE_ADMIN_LISTEN",
    "KEYGATE_STORE_URL",
    "KEYGATE_STORE_POLL_INTERVAL_MS",
    "KEYGATE_UPSTREAM_URL",
    "KEYGATE_UPSTREAM_RESPONSE_TIMEOUT_MS",
    "KEYGATE_KEYS_LIVE_PREFIX",
    "KEYGATE_LIMITS_DEFAULT_PER_KEY_REQUESTS",
    "KEYGATE_LOG_LEVEL",
    "KEYGATE_ROUTES",
];

// Input: the YAML text, then optionally a NUL byte and `NAME=value` lines
// (`NAME` without `KEYGATE_` is taken from `VARS` by its first byte, so
// seed files are plain YAML and the fuzzer still reaches real variables).
fuzz_target!(|data: &[u8]| {
    let (text, env_part) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let env: Vec<(String, String)> = env_part
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let line = String::from_utf8_lossy(line);
            let (name, value) = line.split_once('=').unwrap_or((&line, ""));
            let name = if name.starts_with("KEYGATE_") {
                name.to_owned()
            } else {
                VARS[name.bytes().next().unwrap_or(0) as usize % VARS.len()].to_owned()
            };
            (name, value.to_owned())
        })
        .collect();
    match Config::from_yaml(&text, env) {
        Err(e) => {
            assert!(!e.errors.is_empty(), "an error without errors");
            for field in &e.errors {
                assert!(!field.path.is_empty(), "error without a path: {field:?}");
                assert!(!field.message.is_empty(), "error without a reason: {field:?}");
            }
            let shown = e.to_string();
            assert!(shown.lines().count() > e.errors.len());
        }
        Ok(config) => {
            let text = serde_saphyr::to_string(&config).expect("a valid config serializes");
            match Config::from_yaml(&text, Vec::new()) {
                Ok(again) => assert_eq!(again, config, "round trip changed the config:\n{text}"),
                Err(e) => panic!("a valid config was refused after a round trip: {e}\n{text}"),
            }
        }
    }
});
