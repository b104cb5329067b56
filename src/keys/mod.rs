pub mod builder;
pub mod cidr;
pub mod decision;
pub mod format;
pub mod policy;
pub mod snapshot;

pub use builder::KeyPolicyBuilder;
pub use decision::{Decision, Facts, Quota, RateInfo, Restrictions};
pub use format::{generate, KeyHash, Secret};
pub use policy::{Environment, Permission, Refusal, Status};
pub use snapshot::{Changes, Identity, InlineId, KeyPolicy, KeySet, KeyState, PolicyRow, RetiredRow};
