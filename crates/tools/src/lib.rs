//! # plaza-tools: what tests and operators run against a Plaza server
//!
//! - [`testing`]: an in-process server on a loopback port, and the checks that
//!   everything was torn down (for the server's integration tests).
//! - [`server_process`]: the real `plaza` binary as a child process, its `/metrics`
//!   and `/healthz` over HTTP; [`procstat`]: its CPU, memory and open files from /proc.
//! - [`soak`]: the churn soak's participants (join, publish, receive, chat, leave in
//!   every way a client can).
//! - Binaries: `plaza-load` (load generator, Plaza against Janus), `plaza-soak`, and
//!   `plaza-call` (one participant in a call on a running server, for
//!   scripts/compose-check.sh).
//!
//! None of this is in the server's dependency tree: `cargo tree -p plaza -e normal`
//! shows no plotting, progress bars or histograms.

pub mod procstat;
pub mod server_process;
pub mod soak;
pub mod testing;
