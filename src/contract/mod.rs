//! The HTTP wire contract the proxy and the admin API share, and the CLI
//! reads: the problem+json document (RFC 9457), the stable codes it
//! carries, the request id, and the Bearer credential syntax.
//!
//! Both planes build their answers from here, so a client reading one plane's
//! problem reads the other's the same way. This module owns no I/O and knows
//! no router: it depends only on `crate::keys` (for the refusal list).
//! What each code means is listed in `docs/`.

pub mod bearer;
pub mod codes;
pub mod problem;
pub mod request_id;

pub use codes::{AdminCode, ProxyCode};
pub use problem::{Problem, PROBLEM_JSON, TYPE_BASE};
pub use request_id::{RequestId, X_REQUEST_ID};
