//! `plaza-call`: one participant in a call on a running Plaza, checked the way a user
//! would notice a broken deployment.
//!
//! It joins `--room` at `--url` with the ICE servers `joined` hands it (so, behind
//! docker-compose, the TURN URLs and the credentials Plaza minted), publishes synthetic
//! audio and video, and succeeds once it has received audio and video from `--peers`
//! other participants and every check asked for holds:
//!
//! - `--expect-remote IP:PORT`: every candidate the server announced, and the remote
//!   end of both connections' selected pairs, is that address (the public IP and the
//!   one published UDP port), reached without TURN unless `--relay-only`;
//! - `--relay-only --expect-relay IP`: both connections send from a relayed candidate
//!   that the TURN server allocated on that IP;
//! - `--expect-server-relay IP`: the server's end of both connections is a relayed
//!   candidate on that IP (the server uses TURN itself, `ice.servers`).
//!
//! Then it tells the others on the chat channel and waits (up to `--timeout`) until
//! each of them has said the same or left, so one side finishing first does not cut
//! the other's media off. One process is one participant, so each can run in its
//! own network namespace (scripts/compose-check.sh does). Exit 0: the call worked;
//! 1: it did not (the reason is printed); 2: bad arguments.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use plaza_client::{Event, Participant, ParticipantOptions, VideoOptions};
use plaza_protocol::{MediaKind, PeerTarget, ServerMessage};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;

/// What a participant says on the chat channel once its checks passed.
const DONE: &str = "plaza-call: media received";

#[derive(Parser, Debug)]
#[command(
    name = "plaza-call",
    about = "One participant in a call on a running Plaza: joins, publishes, checks the media path"
)]
struct Args {
    /// The server's WebSocket URL, e.g. ws://198.18.0.1:8080/ws
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "compose-check")]
    room: String,
    #[arg(long)]
    name: String,
    /// Local address to gather ICE candidates on (repeatable; default: all).
    #[arg(long = "ice-ip")]
    ice_ips: Vec<IpAddr>,
    /// Only relayed (TURN) candidates, like a browser with iceTransportPolicy "relay".
    #[arg(long)]
    relay_only: bool,
    /// Other participants whose audio and video must arrive.
    #[arg(long, default_value_t = 1)]
    peers: usize,
    /// Packets per track that count as "media arrived".
    #[arg(long, default_value_t = 50)]
    min_packets: u64,
    /// Every server candidate and selected pair's remote end must be this address.
    #[arg(long)]
    expect_remote: Option<SocketAddr>,
    /// Both connections' local candidate must be relayed, from this IP (needs --relay-only).
    #[arg(long, requires = "relay_only")]
    expect_relay: Option<IpAddr>,
    /// The server's end of both connections' selected pairs must be a relayed
    /// candidate on this IP (the server reaches us through its own TURN server).
    #[arg(long)]
    expect_server_relay: Option<IpAddr>,
    /// How long the whole call may take.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// After the checks passed, stay in the call until this file exists (while
    /// something else looks at the server, e.g. its admin API), within --timeout.
    #[arg(long)]
    hold_until: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let name = args.name.clone();
    match call(args).await {
        Ok(()) => {
            println!("{name}: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{name}: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn call(args: Args) -> Result<()> {
    let deadline = Instant::now() + args.timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut opts = ParticipantOptions::new(&args.url, &args.room, &args.name);
    opts.ice_ips = args.ice_ips.clone();
    opts.relay_only = args.relay_only;
    opts.video = Some(VideoOptions {
        fps: 15,
        bitrate_bps: 300_000,
        keyframe_interval: Some(Duration::from_secs(2)),
    });
    let p = tokio::time::timeout(left(), Participant::join(opts))
        .await
        .context("joining timed out")?
        .context("join")?;
    let turn: Vec<String> = p
        .ice_servers
        .iter()
        .filter(|s| s.urls.iter().any(|u| u.starts_with("turn")))
        .map(|s| {
            format!(
                "{} as {}",
                s.urls.join(" "),
                s.username.as_deref().unwrap_or("(no username)")
            )
        })
        .collect();
    println!(
        "{}: joined as {}; TURN: {}",
        args.name,
        p.id,
        turn.join("; ")
    );
    if args.relay_only && turn.is_empty() {
        bail!("relay-only, but joined listed no TURN server");
    }

    let peers = args.peers;
    let min = args.min_packets;
    let tracks = p
        .wait_media(
            &format!("audio and video from {peers} other participant(s)"),
            left(),
            |tracks| {
                let mut from: Vec<&str> = tracks
                    .iter()
                    .filter(|t| t.packets >= min)
                    .map(|t| t.publisher.as_str())
                    .collect();
                from.sort_unstable();
                from.dedup();
                from.iter()
                    .filter(|id| {
                        [MediaKind::Audio, MediaKind::Video].iter().all(|k| {
                            tracks.iter().any(|t| {
                                t.publisher == **id && t.kind == Some(*k) && t.packets >= min
                            })
                        })
                    })
                    .count()
                    >= peers
            },
        )
        .await?;
    for t in &tracks {
        println!(
            "{}: received {:?} from {}: {} packets, {} lost",
            args.name,
            t.kind.unwrap_or(MediaKind::Audio),
            t.publisher,
            t.packets,
            t.lost()
        );
    }

    for target in [PeerTarget::Publisher, PeerTarget::Subscriber] {
        let pair = p
            .selected_pair(target)
            .await
            .with_context(|| format!("{target:?} connection has no selected pair"))?;
        println!("{}: {target:?} connection: {pair}", args.name);
        if let Some(remote) = args.expect_remote {
            let at = format!("{}:{}", pair.remote.address, pair.remote.port);
            if at != remote.to_string() {
                bail!("{target:?} connection sends to {at}, not {remote}");
            }
            if !args.relay_only && pair.local.typ == RTCIceCandidateType::Relay {
                bail!("{target:?} connection goes through TURN, not straight to {remote}");
            }
        }
        if let Some(relay) = args.expect_server_relay {
            if pair.remote.typ != RTCIceCandidateType::Relay
                || pair.remote.address != relay.to_string()
            {
                bail!("{target:?} connection: the server's end is not relayed on {relay}: {pair}");
            }
            println!(
                "{}: {target:?} connection: the server sends from its relay {}:{}",
                args.name, pair.remote.address, pair.remote.port
            );
        }
        if let Some(relay) = args.expect_relay {
            if pair.local.typ != RTCIceCandidateType::Relay {
                bail!("{target:?} connection is not relayed: {pair}");
            }
            println!(
                "{}: {target:?} connection relayed from {}:{}",
                args.name, pair.local.address, pair.local.port
            );
            if pair.local.address != relay.to_string() {
                bail!(
                    "{target:?} connection relays from {}, not {relay}",
                    pair.local.address
                );
            }
        }
    }
    if let Some(remote) = args.expect_remote {
        let announced: Vec<String> = p
            .events()
            .iter()
            .filter_map(|e| match e {
                Event::ServerCandidate {
                    candidate: Some(c), ..
                } => Some(c.candidate.clone()),
                _ => None,
            })
            .collect();
        if announced.is_empty() {
            bail!("the server announced no candidate");
        }
        for line in &announced {
            // candidate:<foundation> <component> <proto> <priority> <address> <port> typ ...
            let f: Vec<&str> = line.split_whitespace().collect();
            let at = f.get(4..6).map(|a| a.join(":")).unwrap_or_default();
            if at != remote.to_string() {
                bail!("the server announced {line:?}, not {remote}");
            }
        }
        println!(
            "{}: the server announced {} candidate(s), all {remote}",
            args.name,
            announced.len()
        );
    }

    if let Some(file) = &args.hold_until {
        println!(
            "{}: checks passed; staying until {} exists",
            args.name,
            file.display()
        );
        while !file.exists() {
            if left().is_zero() {
                bail!("{} never appeared", file.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Tell the others, and stay until each of them has received ours too: it says so
    // on the chat channel, or leaves (which it does only once its own checks passed; a
    // chat message sent before our channel opened is lost, so leaving counts too).
    p.chat(DONE, None).await?;
    let done = p
        .wait_for("the others to receive our media", left(), |events| {
            let mut finished: Vec<&str> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Chat(c) if c.text == DONE => Some(c.from.as_str()),
                    Event::Server(ServerMessage::ParticipantLeft { participant_id }) => {
                        Some(participant_id.as_str())
                    }
                    _ => None,
                })
                .filter(|id| *id != p.id)
                .collect();
            finished.sort_unstable();
            finished.dedup();
            (finished.len() >= peers).then_some(finished.len())
        })
        .await?;
    println!("{}: {done} other participant(s) done", args.name);
    p.leave().await?;
    Ok(())
}
