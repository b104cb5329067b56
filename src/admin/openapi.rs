//! The OpenAPI 3.1 document of the admin API, served at `GET /openapi.json`.
//!
//! The document is not written by hand: `router()` registers each handler
//! with `utoipa_axum::routes!`, which adds the route and the handler's
//! `#[utoipa::path]` operation together, so a route cannot be served
//! without being documented. This file owns only what no handler does: the
//! document's header, the `admin_token` security scheme, and the reusable
//! problem responses, whose examples are made by `ApiError` itself.

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, ToResponse};

use super::error::ApiError;
use crate::contract::{Problem, PROBLEM_JSON};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keygate admin API",
        description = "Manage accounts, API keys and admin tokens of a keygate gateway. Every `/v1` route \
                       takes `Authorization: Bearer <admin token>`. Errors are `application/problem+json` \
                       with a stable `code`. Times are RFC 3339 UTC.",
    ),
    modifiers(&AdminTokenScheme),
    components(
        schemas(Problem),
        responses(InvalidJson, InvalidParameter, InvalidInput, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, ValidationFailed, Internal, StoreUnavailable),
    ),
    tags(
        (name = "accounts", description = "Tenants, their `api_access` flag and their plan"),
        (name = "plans", description = "Limits pooled over all of an account's keys"),
        (name = "keys", description = "API keys: create, list, edit, rotate, revoke, verify"),
        (name = "admin-tokens", description = "Tokens of the admin API (owner only)"),
        (name = "audit", description = "Who did what to which record, when"),
        (name = "webhooks", description = "Signed events to receivers: key lifecycle, expiry, quota thresholds"),
        (name = "identity", description = "Signed identity tokens: the public keys (no token) and key rotation"),
        (name = "health", description = "Liveness, readiness and this document; no token"),
    )
)]
pub struct ApiDoc;

/// `admin_token`: the Bearer scheme every `/v1` operation requires.
struct AdminTokenScheme;

impl Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin token (`kga_…`, from `keygate admin-token create`) or the \
                         `KEYGATE_ADMIN_TOKEN` owner token. Roles: owner, admin, viewer.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The serialized document, put in the request extensions by `router()`.
#[derive(Clone)]
pub struct Document(pub Bytes);

impl Document {
    pub fn new(api: &utoipa::openapi::OpenApi) -> Document {
        // Serializing a tree of plain strings, maps and numbers cannot fail.
        Document(Bytes::from(api.to_pretty_json().unwrap_or_default()))
    }
}

/// This document
///
/// The OpenAPI 3.1 description of the admin API. No token.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn document(Extension(doc): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc.0)
}

/// A problem response with one example per error, each made by the error
/// itself.
fn problem(description: &str, errors: &[(&str, ApiError)]) -> Response {
    let examples = errors.iter().map(|(name, e)| (*name, ExampleBuilder::new().value(Some(e.example())).build()));
    let content =
        ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).examples_from_iter(examples).build();
    ResponseBuilder::new().description(description).content(PROBLEM_JSON, content).build()
}

/// Declares a reusable problem response (`#/components/responses/NAME`)
/// for `(status = …, response = NAME)` in the handlers' annotations.
macro_rules! problem_response {
    ($name:ident, $description:expr, $errors:expr) => {
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem($description, &$errors).into())
            }
        }
    };
}

problem_response!(
    InvalidJson,
    "`invalid_json`: the body is not JSON",
    [("invalid_json", ApiError::BadRequest("the body is not valid JSON: expected value at line 1 column 1".into()))]
);
problem_response!(
    InvalidParameter,
    "`invalid_parameter`: a path or query parameter that cannot be read (not UTF-8 once percent-decoded, given \
     more than once); `detail` names it",
    [
        ("path", ApiError::InvalidParameter("path parameter `id`: not valid UTF-8 once percent-decoded".into())),
        ("query", ApiError::InvalidParameter("query parameter `limit`: given more than once".into()))
    ]
);
problem_response!(
    InvalidInput,
    "`invalid_json`: the body is not JSON; `invalid_parameter`: a path parameter that cannot be read (not UTF-8 \
     once percent-decoded); `detail` names it",
    [
        ("invalid_json", ApiError::BadRequest("the body is not valid JSON: expected value at line 1 column 1".into())),
        (
            "invalid_parameter",
            ApiError::InvalidParameter("path parameter `id`: not valid UTF-8 once percent-decoded".into())
        )
    ]
);
problem_response!(
    TooLarge,
    "`body_too_large`: the body is over `max_body_bytes`",
    [("body_too_large", ApiError::TooLarge)]
);
problem_response!(
    ValidationFailed,
    "`validation_failed`: JSON of the wrong shape, or a value out of range; `field` names the body field or \
     query parameter at fault",
    [
        ("expires_at", ApiError::invalid("expires_at", "must be in the future")),
        ("unknown_field", ApiError::invalid("colour", "unknown field `colour`, expected one of `name`, `api_access`")),
        ("limit", ApiError::invalid("limit", "must be a whole number from 1 to 200"))
    ]
);
problem_response!(
    NotFound,
    "`not_found`: no such record, or one outside a confined token's account",
    [("not_found", ApiError::NotFound)]
);
problem_response!(
    Conflict,
    "`conflict`: the record's state forbids the change",
    [("revoked", ApiError::Conflict("the key is revoked".into()))]
);
problem_response!(
    Forbidden,
    "The token's role or account does not allow this: `forbidden`; creating a key for an account whose API \
     access is off: `api_access_disabled`",
    [
        ("read_only", ApiError::Forbidden("this admin token is read-only")),
        ("owner_only", ApiError::Forbidden("only owner tokens manage admin tokens")),
        ("api_access_disabled", ApiError::api_access_disabled())
    ]
);
problem_response!(
    StoreUnavailable,
    "`store_unavailable`: the store cannot be reached; nothing was changed",
    [("store_unavailable", ApiError::StoreUnavailable)]
);
problem_response!(
    Internal,
    "`internal`: a fault of keygate's, logged with its cause",
    [("internal", ApiError::Internal(String::new()))]
);

/// 401, with the `WWW-Authenticate` challenge.
pub struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        let mut response = problem(
            "`missing_token`: no `Authorization: Bearer` header; `invalid_token`: not a live admin token",
            &[("missing_token", ApiError::MissingToken), ("invalid_token", ApiError::InvalidToken)],
        );
        let challenge = HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String))
            .description(Some("`Bearer realm=\"keygate-admin\"`"))
            .build();
        response.headers.insert("WWW-Authenticate".into(), challenge);
        ("Unauthorized", response.into())
    }
}
