//! `GET /openapi.json`: the admin API's OpenAPI document, generated from the
//! handlers' types, against the real router and a real SQLite file. The
//! document must list exactly the routes of docs/admin-api.md#routes, every one of them
//! must be served, and each operation must document its token, success and
//! errors.

mod kit;

use std::collections::BTreeSet;

use http::{Method, StatusCode};
use kit::Admin;
use kit::AdminCalls;
use serde_json::{json, Value};

/// docs/admin-api.md#routes, route by route, plus the dashboard's two additions
/// (`/v1/me`, `/v1/keys/{id}/usage`) and the identity key's rotation.
const V1_ROUTES: [(&str, &str); 33] = [
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/{id}"),
    ("PATCH", "/v1/accounts/{id}"),
    ("POST", "/v1/plans"),
    ("GET", "/v1/plans"),
    ("GET", "/v1/plans/{id}"),
    ("PATCH", "/v1/plans/{id}"),
    ("DELETE", "/v1/plans/{id}"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("GET", "/v1/keys/{id}"),
    ("PATCH", "/v1/keys/{id}"),
    ("DELETE", "/v1/keys/{id}"),
    ("POST", "/v1/keys/{id}/rotate"),
    ("POST", "/v1/keys/{id}/revoke"),
    ("POST", "/v1/keys/{id}/quota"),
    ("POST", "/v1/keys/bulk-revoke"),
    ("POST", "/v1/keys/import"),
    ("POST", "/v1/keys/report-leak"),
    ("POST", "/v1/keys/verify"),
    ("GET", "/v1/audit"),
    ("POST", "/v1/admin-tokens"),
    ("GET", "/v1/admin-tokens"),
    ("DELETE", "/v1/admin-tokens/{id}"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("GET", "/v1/me"),
    ("GET", "/v1/keys/{id}/usage"),
    ("POST", "/v1/identity/rotate"),
];

/// Served without a token.
const OPEN_ROUTES: [(&str, &str); 4] =
    [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json"), ("GET", "/.well-known/jwks.json")];

/// The key record of docs/admin-api.md#shapes.
const KEY_FIELDS: [&str; 23] = [
    "id",
    "account_id",
    "name",
    "description",
    "permission",
    "status",
    "enabled",
    "environment",
    "prefix",
    "preview",
    "created_at",
    "updated_at",
    "expires_at",
    "last_used_at",
    "usage_count",
    "rotated_at",
    "revoked_at",
    "rate_limit",
    "allowed_ips",
    "allowed_routes",
    "metadata",
    "quota",
    "quota_usage",
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Fetches the document without a token, checking its content type.
async fn document(admin: &Admin) -> Value {
    let res = admin.raw(Method::GET, "/openapi.json", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    serde_json::from_slice(res.body()).expect("the document is JSON")
}

/// Every (METHOD, path) the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("path item");
            METHODS.iter().filter(|m| item.contains_key(&m.to_ascii_lowercase())).map(|m| (m.to_string(), path.clone()))
        })
        .collect()
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &doc["paths"][path][method.to_ascii_lowercase()]
}

/// Follows a local `$ref` (`#/components/...`), or returns the value itself.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc.pointer(r.strip_prefix('#').expect("a local $ref")).unwrap_or(&Value::Null);
            assert!(!target.is_null(), "dangling $ref {r}");
            resolve(doc, target)
        }
        None => v,
    }
}

/// Whether a media type has an example: its own, its schema's, or (for
/// lists) its items' schema's.
fn has_example(doc: &Value, media: &Value) -> bool {
    let schema = resolve(doc, &media["schema"]);
    let items = resolve(doc, &schema["properties"]["items"]["items"]);
    [media, schema, items].iter().any(|v| v.get("example").is_some())
}

fn set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect()
}

#[tokio::test]
async fn openapi_json_lists_every_route_of_design_section_4() {
    let admin = Admin::new().await;
    let doc = document(&admin).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "keygate admin API");
    let documented = operations(&doc);
    let v1: BTreeSet<_> = documented.iter().filter(|(_, p)| p.starts_with("/v1/")).cloned().collect();
    assert_eq!(v1, set(&V1_ROUTES), "the /v1 operations of the document against the admin routes of docs/admin-api.md");
    assert_eq!(documented, &set(&V1_ROUTES) | &set(&OPEN_ROUTES), "every operation the router serves");
}

/// Each documented operation is served with the statuses it documents, the
/// methods it does not document are refused with 405, and the /v1 ones
/// refuse a missing token with the documented 401.
#[tokio::test]
async fn every_documented_operation_is_served_as_documented() {
    let admin = Admin::new().await;
    let doc = document(&admin).await;
    // Real records, so a 404 can only mean the route is missing.
    let account = admin.account("Acme").await;
    let (key, _) = admin.create_key(json!({ "account_id": account, "name": "CI", "permission": "read" })).await;
    // On the account, so the DELETE answers its documented 409 and the plan
    // stays for the other operations.
    let (s, plan) = admin.call(Method::POST, "/v1/plans", Some(json!({ "name": "Free" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    let (s, _) =
        admin.call(Method::PATCH, &format!("/v1/accounts/{account}"), Some(json!({ "plan_id": plan["id"] }))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, token) =
        admin.call(Method::POST, "/v1/admin-tokens", Some(json!({ "name": "ci", "role": "viewer" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{token}");
    let body = json!({ "url": "https://hooks.example.com/k", "events": ["key.created"] });
    let (s, hook) = admin.call(Method::POST, "/v1/webhooks", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let id_for = |path: &str| match path {
        p if p.starts_with("/v1/accounts/") => account.clone(),
        p if p.starts_with("/v1/plans/") => plan["id"].as_str().expect("plan id").to_owned(),
        p if p.starts_with("/v1/keys/") => key["id"].as_str().expect("key id").to_owned(),
        p if p.starts_with("/v1/admin-tokens/") => token["token"]["id"].as_str().expect("token id").to_owned(),
        p if p.starts_with("/v1/webhooks/") => hook["webhook"]["id"].as_str().expect("webhook id").to_owned(),
        p => panic!("no record for {p}"),
    };

    // Deletes last, so the other operations on a record find it.
    let mut operations: Vec<(String, String)> = operations(&doc).into_iter().collect();
    operations.sort_by_key(|(method, _)| method == "DELETE");
    for (method, path) in operations {
        let op = operation(&doc, &method, &path);
        let documented: BTreeSet<String> = op["responses"].as_object().expect("responses").keys().cloned().collect();
        let uri = if path.contains("{id}") { path.replace("{id}", &id_for(&path)) } else { path.clone() };
        let method_ = Method::from_bytes(method.as_bytes()).expect("method");
        let body = matches!(method.as_str(), "POST" | "PATCH").then(|| "{}".to_owned());

        let (status, answer) = admin.call_as(Some(kit::TOKEN), method_.clone(), &uri, body.clone()).await;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri} is documented but not served: {status} {answer}"
        );
        assert!(
            documented.contains(status.as_str()),
            "{method} {path} answered {status}, documented {documented:?}: {answer}"
        );

        if path.starts_with("/v1/") {
            let (status, answer) = admin.call_as(None, method_, &uri, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a token");
            assert_eq!(answer["code"], "missing_token");
        }

        let served: BTreeSet<&str> =
            METHODS.iter().copied().filter(|m| doc["paths"][&path].get(m.to_ascii_lowercase()).is_some()).collect();
        for other in METHODS.iter().filter(|m| !served.contains(*m)) {
            let (status, _) =
                admin.call_as(Some(kit::TOKEN), Method::from_bytes(other.as_bytes()).expect("m"), &uri, None).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path} is served but not documented");
        }
    }
}

#[tokio::test]
async fn every_v1_operation_documents_its_token_success_and_errors() {
    let admin = Admin::new().await;
    let doc = document(&admin).await;
    let scheme = &doc["components"]["securitySchemes"]["admin_token"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");

    let mut operation_ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let op = operation(&doc, &method, &path);
        let what = format!("{method} {path}");
        assert!(
            operation_ids.insert(op["operationId"].as_str().expect("operationId").to_owned()),
            "{what}: operationId reused"
        );
        assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{what}: no tag");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what}: no summary");
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.keys().any(|s| s.starts_with('2')), "{what}: no success response");

        if !path.starts_with("/v1/") {
            assert!(op.get("security").is_none(), "{what} takes no token");
            continue;
        }
        assert_eq!(op["security"], json!([{ "admin_token": [] }]), "{what}: security");
        assert!(responses.contains_key("401"), "{what}: no 401");
        assert!(responses.contains_key("503"), "{what}: no 503");

        for (status, response) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
            let response = resolve(&doc, response);
            let content = &response["content"]["application/problem+json"];
            assert_eq!(content["schema"]["$ref"], "#/components/schemas/Problem", "{what} {status}");
            let examples = content["examples"].as_object().expect("problem examples");
            assert!(!examples.is_empty(), "{what} {status}: no example");
            for example in examples.values() {
                let example = &example["value"];
                assert_eq!(example["status"].to_string(), *status, "{what} {status}: {example}");
                assert!(example["code"].is_string() && example["type"].is_string() && example["detail"].is_string());
                assert_eq!(example.get("field").is_some(), status == "422", "{what} {status}: `field` only on 422");
            }
        }

        // A path or query parameter axum cannot read is a 400
        // `invalid_parameter` (tests/hardening/admin.rs).
        if op["parameters"].as_array().is_some_and(|p| !p.is_empty()) {
            let null = Value::Null;
            let bad_request = resolve(&doc, responses.get("400").unwrap_or(&null));
            let codes: BTreeSet<&str> = bad_request["content"]["application/problem+json"]["examples"]
                .as_object()
                .map(|e| e.values().filter_map(|x| x["value"]["code"].as_str()).collect())
                .unwrap_or_default();
            assert!(codes.contains("invalid_parameter"), "{what} takes parameters: no 400 invalid_parameter");
        }
        if let Some(body) = op.get("requestBody") {
            assert!(has_example(&doc, &body["content"]["application/json"]), "{what}: request body without example");
            for s in ["400", "413", "422"] {
                assert!(responses.contains_key(s), "{what} takes a body: no {s}");
            }
        }
        let (_, success) = responses.iter().find(|(s, _)| s.starts_with('2')).expect("2xx");
        if let Some(content) = success.get("content") {
            assert!(has_example(&doc, &content["application/json"]), "{what}: success body without example");
        }
    }

    let params = |path: &str| -> BTreeSet<String> {
        operation(&doc, "GET", path)["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .inspect(|p| assert_eq!(p["in"], "query"))
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let names = |ns: &[&str]| ns.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(params("/v1/keys"), names(&["account_id", "q", "permission", "status", "limit", "cursor"]));
    assert_eq!(
        params("/v1/audit"),
        names(&["account_id", "key_id", "actor_id", "action", "since", "until", "limit", "cursor"])
    );
}

#[tokio::test]
async fn key_record_schema_and_example_list_all_23_fields() {
    let admin = Admin::new().await;
    let doc = document(&admin).await;
    let show = operation(&doc, "GET", "/v1/keys/{id}");
    let schema = resolve(&doc, &show["responses"]["200"]["content"]["application/json"]["schema"]);
    let fields: BTreeSet<String> = KEY_FIELDS.iter().map(|f| f.to_string()).collect();

    let properties: BTreeSet<String> = schema["properties"].as_object().expect("properties").keys().cloned().collect();
    assert_eq!(properties, fields, "schema properties");
    let required: BTreeSet<String> =
        schema["required"].as_array().expect("required").iter().map(|f| f.as_str().expect("name").to_owned()).collect();
    assert_eq!(required, fields, "every field is present, null when unset");
    let example: BTreeSet<String> = schema["example"].as_object().expect("example").keys().cloned().collect();
    assert_eq!(example, fields, "example");

    let nullable = |field: &str| {
        let p = &schema["properties"][field];
        p["type"].as_array().is_some_and(|t| t.contains(&json!("null")))
            || p["oneOf"].as_array().is_some_and(|o| o.contains(&json!({ "type": "null" })))
    };
    for field in
        ["description", "expires_at", "last_used_at", "rotated_at", "revoked_at", "rate_limit", "quota", "quota_usage"]
    {
        assert!(nullable(field), "{field} must be nullable: {}", schema["properties"][field]);
    }
    for field in ["id", "name", "status", "created_at", "allowed_ips", "metadata"] {
        assert!(!nullable(field), "{field} is never null");
    }
    assert_eq!(schema["properties"]["created_at"]["format"], "date-time");
    assert_eq!(schema["properties"]["metadata"]["type"], "object");

    let route = resolve(&doc, &schema["properties"]["allowed_routes"]["items"]);
    let route_fields: BTreeSet<&str> =
        route["properties"].as_object().expect("properties").keys().map(String::as_str).collect();
    assert_eq!(route_fields, BTreeSet::from(["host", "methods", "path_prefix"]), "{route}");
    let host = &route["properties"]["host"];
    assert!(
        host["type"].as_array().is_some_and(|t| t.contains(&json!("null")))
            || host["oneOf"].as_array().is_some_and(|o| o.contains(&json!({ "type": "null" }))),
        "allowed_routes[].host is nullable: {host}"
    );

    // The wire agrees with the schema.
    let account = admin.account("Acme").await;
    let (key, _) = admin.create_key(json!({ "account_id": account, "name": "CI", "permission": "write" })).await;
    let wire: BTreeSet<String> = key.as_object().expect("record").keys().cloned().collect();
    assert_eq!(wire, fields, "a created key's record");
}

/// What makes "every route in the router is in the document" hold by
/// construction: `router()` adds routes only through `routes!`, which adds
/// the handler's OpenAPI operation with its route.
#[test]
fn the_router_declares_routes_only_through_routes_macro() {
    let source = include_str!("../src/admin/mod.rs");
    for bypass in [".route(", ".route_service(", ".nest_service(", "axum::routing"] {
        assert!(
            !source.contains(bypass),
            "src/admin/mod.rs uses `{bypass}`: that route would be missing from the document"
        );
    }
    assert!(source.contains(".routes(routes!("));
}
