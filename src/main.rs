//! `plaza`: the server binary. No arguments needed: it listens on 0.0.0.0:8080 and
//! serves the web client from ./web.

use std::process::ExitCode;

use clap::Parser;
use plaza::config::{Config, ConfigArgs};

#[derive(Parser)]
#[command(
    name = "plaza",
    version,
    about = "A small, fast WebRTC SFU for browser video-call rooms"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("plaza: {e}");
            return ExitCode::from(2);
        }
    };
    plaza::logging::init(&config.log);
    let listener = match std::net::TcpListener::bind(config.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("plaza: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    };
    let result =
        actix_web::rt::System::new().block_on(plaza::run(listener, config, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plaza: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
