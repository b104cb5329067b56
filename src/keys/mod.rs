pub mod cidr;
pub mod counters;
pub mod decision;
pub mod format;
pub mod policy;
mod retired;
pub mod snapshot;

pub use counters::{Counts, Outcome, UsageTable};
pub use decision::{Decision, Facts, Quota, RateInfo, Restrictions};
pub use format::{generate, KeyHash, Secret};
pub use policy::{Environment, Permission, Refusal, Status};
pub use snapshot::{Changes, Identity, InlineId, KeyPolicy, KeySet, KeyState, PolicyRow, RetiredRow};
