pub mod builder;
pub mod cidr;
pub mod counters;
pub mod decision;
pub mod format;
pub mod policy;
pub mod restrictions;
mod retired;
pub mod route;
pub mod snapshot;

pub use builder::KeyPolicyBuilder;
pub use counters::{Counts, Outcome, UsageTable};
pub use decision::{Decision, Facts, Quota, RateInfo};
pub use format::{generate, KeyHash, Secret};
pub use policy::{Environment, Permission, Refusal, Status};
pub use restrictions::{RestrictionError, Restrictions, RouteRule};
pub use snapshot::{Changes, Identity, InlineId, KeyPolicy, KeySet, KeyState, PolicyRow, RetiredRow};
