//! `plaza doctor`: checks a deployment from the host it runs on, reading the same
//! configuration as the server, and says in plain words what is wrong and how to fix
//! it. One line per check (`ok`, `warn`, `FAIL` + the fix), a summary, and a non-zero
//! exit when something fails.
//!
//! In order: configuration mistakes the server would only meet at the first call
//! (`config_checks`); the addresses the server will announce
//! ([`crate::ice_addresses`], the same function as the startup log, checked in
//! `announce`); the address a STUN server sees (`public_address`); TURN allocations
//! with the credentials Plaza mints, per server and transport (`turn_checks`); and the
//! media UDP port, reached from a TURN relay ([`reachability`]). Only
//! [`crate::rtc::probe`] speaks STUN/TURN.

mod announce;
mod config_checks;
mod public_address;
pub mod reachability;
pub mod report;
mod turn_checks;
pub mod urls;

use std::path::PathBuf;
use std::time::Duration;

pub use self::report::{Check, Report, Status};
use crate::config::Config;
use crate::ice_addresses::announced_addresses;
use crate::rtc::probe;

/// What `plaza doctor` takes besides the server's configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long each probe (a STUN answer, an allocation, a datagram) may take.
    pub timeout: Duration,
    /// CA bundle for `turns:` certificates (else the system's).
    pub ca_file: Option<PathBuf>,
}

/// Runs every check against `config` on this host.
pub async fn run(config: &Config, options: &Options) -> Report {
    let mut report = Report::default();
    report.push(Check::ok("config", "configuration loaded and valid"));
    let interfaces = crate::rtc::local_addresses();
    report.extend(config_checks::check(config, &interfaces));

    let announced = announced_addresses(&config.ice, &interfaces);
    report.extend(announce::check(&announced));
    // Fetched once: its STUN/TURN servers serve the address check and the TURN checks.
    let (provider_checks, provider) = turn_checks::provider_list(config).await;
    report.extend(public_address::check(config, &provider, &announced, options.timeout).await);

    let roots = probe::load_roots(options.ca_file.clone());
    let (turn, relay) = turn_checks::check(config, &provider, &roots, options.timeout).await;
    report.extend(provider_checks);
    report.extend(turn);
    report.extend(reachability::check(&announced, relay.as_ref(), options.timeout).await);
    if let Some(relay) = relay {
        relay.allocation.close().await;
    }
    report
}

/// The report when the configuration does not even load.
pub fn config_error(error: &crate::Error) -> Report {
    let mut report = Report::default();
    report.push(Check::fail(
        "config",
        format!("the configuration is refused: {error}"),
        "fix the key it names (the file, its PLAZA_* variable or its flag: see `plaza --help` \
         and config.example.toml); the server would refuse to start the same way",
    ));
    report
}
