//! Import with the real `keygate` binary: `serve` on a SQLite file (a key
//! imported by hash moves to blake3 on first use and still works after a
//! restart; no plaintext in the store or the log), and `keygate keys
//! import --file keys.csv`.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;

use super::kit::http::get_with_key;
use super::kit::process::{self, Process};
use super::kit::upstream::Upstream;
use super::kit::{admin_client, AdminCalls, TOKEN};
use super::{sha256_hex, stored, within, LEGACY};

fn serve(dir: &std::path::Path, upstream: &Upstream) -> Process {
    process::spawn(dir, &process::yaml(dir, &upstream.url("")), &[("KEYGATE_ADMIN_TOKEN", TOKEN)])
}

#[tokio::test]
async fn the_binary_moves_a_key_on_first_use_keeps_it_after_a_restart_and_stores_no_plaintext() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = serve(dir.path(), &upstream);
    let admin = admin_client(gw.admin);
    let acc = admin.account("Migrated").await;
    let hashed = "binary-hashed-partner-secret-77";
    let (s, answer) = admin
        .call(
            Method::POST,
            "/v1/keys/import",
            Some(json!({ "account_id": acc, "keys": [
                { "hash": { "algorithm": "sha256", "encoding": "hex", "value": sha256_hex(hashed) }, "name": "hashed", "permission": "read" },
                { "secret": LEGACY, "name": "plain", "permission": "write" },
            ] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    let id = answer["imported"][0]["key"]["id"].as_str().expect("id").to_owned();
    assert_eq!(get_with_key(gw.proxy, "/", hashed).await.status, StatusCode::OK);
    let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    within(Duration::from_secs(5), || async { stored(&url, &id).await.0 == "blake3" }).await;

    gw.sigterm();
    assert!(gw.wait(Duration::from_secs(10)).success());
    let first_log = gw.log();
    let gw = serve(dir.path(), &upstream);
    assert_eq!(get_with_key(gw.proxy, "/", hashed).await.status, StatusCode::OK);
    assert_eq!(get_with_key(gw.proxy, "/", LEGACY).await.status, StatusCode::OK);
    assert_eq!(get_with_key(gw.proxy, "/", "binary-hashed-partner-secret-78").await.code(), "invalid_key");

    // Never stored or logged: the database files and both logs.
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("keygate.db")) {
            let bytes = std::fs::read(&path).expect("read");
            for secret in [hashed, LEGACY] {
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in {path:?}");
            }
        }
    }
    for log in [first_log, gw.log()] {
        assert!(!log.contains(hashed) && !log.contains(LEGACY), "a secret in the log:\n{log}");
    }
}

#[tokio::test]
async fn keygate_keys_import_reads_a_csv_file() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = serve(dir.path(), &upstream);
    let admin = admin_client(gw.admin);
    let acc = admin.account("Migrated").await;
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(keygate::keys::foreign::sha256(b"csv-partner-base64-secret").0)
    };
    let csv = format!(
        "secret,sha256,name,permission,expires_at\n\
         csv-plain-secret-000000001,,\"Billing, EU\",read,2031-01-01T00:00:00Z\n\
         ,{},hashed hex,write,\n\
         ,{b64},hashed base64,read,\n\
         csv-plain-secret-000000004,,bad,admin,\n",
        sha256_hex("csv-partner-hex-secret-0001")
    );
    let file = dir.path().join("keys.csv");
    std::fs::write(&file, csv).expect("csv");
    let env = [("KEYGATE_ADMIN_URL", format!("http://{}", gw.admin)), ("KEYGATE_ADMIN_TOKEN", TOKEN.to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = file.to_string_lossy().into_owned();
    let args = ["keys", "import", "--file", path.as_str(), "--account", acc.as_str()];
    let run = process::run(&args, &env, None);
    assert_eq!(run.code, Some(1), "a refused row is exit 1:\n{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.trim(), "imported 3 keys (3 created, 0 already imported), 1 rows failed");
    assert!(run.stderr.contains("row 5: validation_failed: permission:"), "{}", run.stderr);
    assert!(!run.stderr.contains("csv-plain-secret"), "no secret printed: {}", run.stderr);
    for secret in ["csv-plain-secret-000000001", "csv-partner-hex-secret-0001", "csv-partner-base64-secret"] {
        assert_eq!(get_with_key(gw.proxy, "/", secret).await.status, StatusCode::OK, "{secret}");
    }
    let (_, list) = admin.call(Method::GET, &format!("/v1/keys?account_id={acc}&q=billing"), None).await;
    assert_eq!(list["items"][0]["expires_at"], "2031-01-01T00:00:00Z", "{list}");

    // Run again, as JSON: the same keys, none created.
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let again = process::run(&json_args, &env, None);
    assert_eq!(again.code, Some(1));
    let answer = again.json();
    let rows: Vec<(u64, bool)> = answer["imported"]
        .as_array()
        .expect("imported")
        .iter()
        .map(|i| (i["row"].as_u64().expect("row"), i["created"].as_bool().expect("created")))
        .collect();
    assert_eq!(rows, [(2, false), (3, false), (4, false)]);
    assert_eq!(answer["failed"][0]["row"], 5);

    // Usage errors before any call.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "secret,colour\nx,y\n").expect("csv");
    let bad = bad.to_string_lossy().into_owned();
    let run = process::run(&["keys", "import", "--file", bad.as_str(), "--account", acc.as_str()], &env, None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("column 2 of the header row"), "{}", run.stderr);
    // The cell is not repeated: without a header row it would be a secret.
    assert!(!run.stderr.contains("colour"), "{}", run.stderr);
}
