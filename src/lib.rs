//! keygate: an API-key authentication gateway. See DESIGN.md for the parts.

pub mod config;
pub mod keys;
pub mod shutdown;
