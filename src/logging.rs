//! `tracing` output: human-readable or one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, DEFAULT_LOG_FILTER};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configuration
/// (handy for a one-off debug session).
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directives(&log.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if log.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The filter to use for `log.level`. Empty means the default, not "log nothing":
/// docker-compose.yml passes `PLAZA_LOG` from .env, empty unless the operator sets it.
fn directives(level: &str) -> &str {
    if level.trim().is_empty() {
        DEFAULT_LOG_FILTER
    } else {
        level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_level_is_the_default_filter() {
        assert_eq!(directives(""), DEFAULT_LOG_FILTER);
        assert_eq!(directives("  "), DEFAULT_LOG_FILTER);
        assert_eq!(directives("plaza=debug"), "plaza=debug");
    }
}
