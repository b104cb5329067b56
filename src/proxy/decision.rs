//! The proxy's decision on one request: its credential, the paths and
//! methods override headers name (when they pass), the route cost it
//! spends, and the key's decision on all of them.

use http::header::HOST;

use super::fields::{self, Fields, View};
use super::live::Live;
use super::{auth, overrides, Admitted, Proxy, Refused};
use crate::clock::now_ms;
use crate::contract::ProxyCode;
use crate::keys::{route, Facts};

impl Proxy {
    /// The credential and the key decision. The snapshot guard lives only
    /// inside this synchronous call, never across an await. `host` is
    /// `request_host`'s; `cost` is the request line's route's; a path an
    /// override header names (when they pass) raises it to that path's
    /// route's.
    pub(super) fn authenticate<F: Fields>(
        &self,
        live: &Live,
        head: View<'_, F>,
        client: Option<std::net::IpAddr>,
        host: Option<&str>,
        cost: u64,
    ) -> Result<Admitted, Refused> {
        let credential = live.credentials.extract(head.fields, head.uri).map_err(|e| {
            let detail = match e {
                auth::CredentialError::Missing => None,
                auth::CredentialError::Conflicting => Some("The request carries two different API keys."),
                auth::CredentialError::Empty => Some("The API key is empty."),
            };
            Refused { problem: ProxyCode::Refused(e.refusal()), detail, rate: None, quota: None }
        })?;
        let named = if live.client_headers.passes_overrides() {
            overrides::named(head.fields).map_err(|overrides::Unreadable| Refused {
                problem: ProxyCode::BadRequest,
                detail: Some("A method or URL override header names no method or path."),
                rate: None,
                quota: None,
            })?
        } else {
            None
        };
        // A path an override header names is what the upstream may serve,
        // so its route's cost is what the request spends: the highest of
        // the request line's and every named path's.
        let cost =
            named.iter().flat_map(|n| &n.paths).map(|path| live.routes.resolve(path, host).cost).fold(cost, u64::max);
        let facts = Facts { method: head.method, path: head.uri.path(), client_ip: client, host, cost };
        let keyset = self.keyset.load();
        let now = now_ms();
        // The upstream may act on any mix of the request line and what the
        // override headers name: each must be allowed. The first refused
        // one is the request's decision, counted once like any other.
        let mut decided = facts;
        if let Some(named) = &named {
            let paths = || std::iter::once(head.uri.path()).chain(named.paths.iter().map(String::as_str));
            'search: for method in std::iter::once(head.method).chain(&named.methods) {
                for path in paths() {
                    let alternative = Facts { method, path, ..facts };
                    if keyset.dry_run(credential.key, &alternative, now).is_err() {
                        decided = alternative;
                        break 'search;
                    }
                }
            }
        }
        let decision = keyset.decide(credential.key, &decided, now, live.default_quota);
        match decision.result {
            Ok(identity) => {
                let identity_token = self.identity.as_ref().and_then(|issuer| {
                    // A second lookup, paid only with identity tokens on: the
                    // token says more than the `Identity` holds.
                    let policy = keyset.policy_of(credential.key)?;
                    let plan = keyset.account(&policy.account_id).map(|a| a.plan.plan_id.as_str());
                    Some(issuer.token(policy, plan, now))
                });
                Ok(Admitted {
                    identity,
                    found_in: credential.found_in,
                    rate: decision.rate,
                    quota: decision.quota,
                    identity_token,
                })
            }
            Err(refusal) => Err(Refused {
                problem: ProxyCode::Refused(refusal),
                detail: None,
                rate: decision.rate,
                quota: decision.quota.map(Box::new),
            }),
        }
    }
}

/// The request's host (`Host`, or the URI's authority in HTTP/2), without
/// port or trailing dot: what host routes and key restrictions match.
pub(super) fn request_host<'a, F: Fields>(head: View<'a, F>) -> Option<&'a str> {
    let host = head.fields.first(&HOST).and_then(fields::text).or_else(|| head.uri.host());
    host.map(route::request_host)
}
