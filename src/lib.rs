//! keygate: an API-key authentication gateway. See DESIGN.md for the parts.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod usage;
