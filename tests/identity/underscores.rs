//! `_` spellings of the headers keygate manages never reach the upstream
//! (CGI-style servers read `X_Keygate_Key_Id` as `X-Keygate-Key-Id`), and
//! by default no header with `_` in its name does.

use http::Method;

use crate::kit::config;
use crate::kit::upstream::Upstream;
use crate::{KeySpec, OneKeyGateway};

/// `_` spellings of headers keygate sets or strips, as a client would
/// send them to pose as another key or another client.
const MANAGED_SPELLINGS: [(&str, &str); 12] = [
    ("X_Keygate_Key_Id", "key_victim"),
    ("x_keygate_account_id", "acc_victim"),
    ("X_Keygate_Permission", "write"),
    ("x-keygate_key-id", "key_mixed"),
    ("X_Forwarded_For", "10.0.0.1"),
    ("x_forwarded_proto", "https"),
    ("X_Request_Id", "forged"),
    ("x_real_ip", "10.0.0.1"),
    ("X_Forwarded_Host", "internal.example"),
    ("x_api_key", "kg_live_forged"),
    ("X_HTTP_Method_Override", "DELETE"),
    ("x_original_url", "/admin"),
];

fn underscored(headers: &serde_json::Value) -> Vec<String> {
    headers.as_object().expect("headers").keys().filter(|name| name.contains('_')).cloned().collect()
}

#[tokio::test]
async fn underscore_spellings_of_managed_headers_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let gw = OneKeyGateway::start(config(&upstream.url("")), KeySpec::read()).await;
    let reply = gw.send(Method::GET, "/x", &MANAGED_SPELLINGS).await;
    assert_eq!(reply.status.as_u16(), 200);
    let seen = reply.json()["headers"].clone();
    assert_eq!(underscored(&seen), Vec::<String>::new(), "{seen}");
    assert_eq!(seen["x-keygate-key-id"], serde_json::json!(["key_one"]));
    assert_eq!(seen["x-keygate-permission"], serde_json::json!(["read"]));
}

#[tokio::test]
async fn headers_with_underscores_are_dropped_by_default() {
    let upstream = Upstream::start().await;
    let gw = OneKeyGateway::start(config(&upstream.url("")), KeySpec::read()).await;
    let reply = gw.send(Method::GET, "/x", &[("x_custom_thing", "1"), ("x-custom-thing", "2")]).await;
    let seen = reply.json()["headers"].clone();
    assert!(seen.get("x_custom_thing").is_none(), "{seen}");
    assert_eq!(seen["x-custom-thing"], serde_json::json!(["2"]));
}
