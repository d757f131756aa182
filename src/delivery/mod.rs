//! The webhook delivery engine: encryption of secrets at rest, Standard Webhooks signing, the
//! retry schedule, the SSRF guard, building and sending requests, metrics, the worker and
//! its node heartbeat.

pub mod crypto;
pub mod heartbeat;
pub mod http;
pub mod metrics;
pub mod schedule;
pub mod signing;
pub mod ssrf;
pub mod worker;
