//! `plaza`: the server binary. No arguments needed: it listens on 0.0.0.0:8080 and
//! serves the web client from ./web. `plaza token` mints a room token; `plaza doctor`
//! checks a deployment with the server's own configuration.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use plaza::config::{Config, ConfigArgs};

#[derive(Parser)]
#[command(
    name = "plaza",
    version,
    about = "A small, fast WebRTC SFU for browser video-call rooms",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default)
    Serve(Box<ConfigArgs>),
    /// Mint a signed room token (needs the server's auth secret)
    Token(TokenArgs),
    /// Check this host's deployment (addresses, NAT, TURN, the media port) with the
    /// server's configuration; exits non-zero when a check fails
    Doctor(Box<DoctorArgs>),
}

#[derive(Args)]
#[command(
    long_about = "Checks the deployment on the host the server runs on, reading the same \
configuration as `plaza serve` (--config file, PLAZA_* variables, the same flags): \
configuration mistakes the server would only meet at the first call, the addresses it will \
announce as ICE candidates, the public address a STUN server sees against ice.nat_1to1_ips, \
TURN allocations with the credentials Plaza mints (each server, each transport, TLS \
certificates), and whether the media UDP port is reachable from a TURN relay. Prints one \
line per check (ok, warn, FAIL with its fix) and a summary; exits 1 when a check fails, 2 \
when the configuration does not load."
)]
struct DoctorArgs {
    /// How long each probe may take (a STUN answer, a TURN allocation, a datagram)
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    probe_timeout: Duration,
    /// CA bundle (PEM) to check turns: certificates against (else the system's)
    #[arg(long, env = "SSL_CERT_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
struct TokenArgs {
    /// The room the token admits to
    #[arg(long)]
    room: String,
    /// Who the participant is (the token's subject)
    #[arg(long)]
    identity: String,
    /// Display name to impose (otherwise the participant chooses)
    #[arg(long)]
    name: Option<String>,
    /// How long the token is valid
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The participant may only receive, not publish
    #[arg(long)]
    no_publish: bool,
    /// The participant may only publish, not receive
    #[arg(long)]
    no_subscribe: bool,
    /// The secret (else auth.secret from --config / PLAZA_AUTH_SECRET)
    #[arg(long, env = "PLAZA_AUTH_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The token's audience (`aud`); "" for none (else auth.audience from --config /
    /// PLAZA_AUTH_AUDIENCE, which the server then checks)
    #[arg(long, env = "PLAZA_AUTH_AUDIENCE")]
    audience: Option<String>,
    /// The token's issuer (`iss`); "" for none (else auth.issuer from --config /
    /// PLAZA_AUTH_ISSUER)
    #[arg(long, env = "PLAZA_AUTH_ISSUER")]
    issuer: Option<String>,
    /// Configuration file to read auth.secret, auth.audience and auth.issuer from
    #[arg(long, env = "PLAZA_CONFIG")]
    config: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => token(args),
        Some(Command::Serve(config)) => serve(&config),
        Some(Command::Doctor(args)) => doctor(&args),
        None => serve(&cli.config),
    }
}

fn serve(args: &ConfigArgs) -> ExitCode {
    let config = match Config::load(args) {
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

fn doctor(args: &DoctorArgs) -> ExitCode {
    let report = match Config::load(&args.config) {
        Ok(config) => {
            let options = plaza::doctor::Options {
                timeout: args.probe_timeout,
                ca_file: args.ca_file.clone(),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("plaza doctor: {e}");
                    return ExitCode::from(1);
                }
            };
            runtime.block_on(plaza::doctor::run(&config, &options))
        }
        Err(e) => {
            print!("{}", plaza::doctor::config_error(&e).render());
            return ExitCode::from(2);
        }
    };
    print!("{}", report.render());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn token(args: TokenArgs) -> ExitCode {
    // What the flags leave out comes from the file, then the PLAZA_* environment, as
    // `plaza serve` reads them: a token minted on the server's host matches its checks.
    let configured = if args.secret.is_none() || args.audience.is_none() || args.issuer.is_none() {
        let mut file_only = ConfigArgs::default();
        file_only.config = args.config.clone();
        match Config::load(&file_only) {
            Ok(c) => c.auth,
            Err(e) => {
                eprintln!("plaza token: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        Default::default()
    };
    let secret = args.secret.unwrap_or(configured.secret);
    if secret.is_empty() {
        eprintln!("plaza token: no secret: pass --secret, set PLAZA_AUTH_SECRET or auth.secret in --config");
        return ExitCode::from(2);
    }
    // "" on the command line: none, even when one is configured.
    let given = |flag: Option<String>, configured: Option<String>| {
        flag.map_or(configured, |v| (!v.is_empty()).then_some(v))
    };
    let claims = plaza_protocol::auth::Claims {
        name: args.name,
        publish: !args.no_publish,
        subscribe: !args.no_subscribe,
        aud: given(args.audience, configured.audience)
            .into_iter()
            .collect(),
        iss: given(args.issuer, configured.issuer),
        ..plaza_protocol::auth::Claims::new(args.room, args.identity, args.ttl)
    };
    match plaza_protocol::auth::mint(&secret, &claims) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plaza token: {e}");
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
