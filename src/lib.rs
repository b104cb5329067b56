//! keygate: an API-key authentication gateway. See docs/architecture.md for the parts, docs/ for the contract.

pub mod admin;
pub mod authz;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
pub mod fleet;
pub mod identity;
pub mod keys;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod priority;
pub mod proxy;
pub mod quota;
pub mod reconfigure;
pub mod rehash;
pub mod reload;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod webhooks;
