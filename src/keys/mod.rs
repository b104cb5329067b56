pub mod cidr;
pub mod format;
pub mod policy;
pub mod snapshot;

pub use format::{generate, KeyHash, Secret};
pub use policy::{Environment, Permission, Refusal, Status};
pub use snapshot::{Changes, Identity, InlineId, KeyPolicy, KeySet, PolicyRow, RetiredRow};
