//! What each row observes, from outside the server as a client or an operator would:
//! HTTP answers, WebSocket frames, a joined participant's events, thread names in
//! /proc, UDP packets on the wire, the log. Each returns `Ok` when it sees the effect
//! of the value under test, and an `Err` saying what it saw instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

use plaza_client::{Event, Participant, ParticipantOptions, VideoOptions};
use plaza_protocol::auth::{expiry_in, mint, Claims};
use plaza_protocol::{MediaKind, ServerMessage};

use super::client::*;
use super::harness::{web_marker, Run};
pub use super::provider_probes::ProviderProbe;

pub const STUN_URL: &str = "stun:198.18.0.9:3478";
pub const TURN_URL: &str = "turn:198.18.0.10:3478?transport=udp";
pub const TURN_SECRET: &str = "turn-secret-0123456789";
pub const AUTH_SECRET: &str = "auth-secret-0123456789abcdef";
pub const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
/// What the NAT 1:1 row announces (a test address: written into SDP, never sent to).
pub const NAT_IP: &str = "198.18.0.7";

/// How long a participant may take to join and connect its media.
const JOIN_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// `/healthz` answers on `{port2}`, and nothing listens on the base file's port.
    Listen,
    /// `/` serves the run's own index.html.
    WebRoot,
    /// This many threads named so (`comm`, 15 bytes at most): `{workers}`.
    Threads(&'static str),
    /// After SIGTERM, the "shutting down" line reports this budget; exit 0.
    ShutdownBudget(&'static str),
    /// `joined` lists the STUN server.
    IceServers,
    /// A bare WebSocket client gets at least 3 pings within 1.2 s.
    Pings,
    /// A joined participant whose socket drops (no close frame) is still there 0.5 s
    /// later, and gone within 3 s.
    ResumeGraceEnds,
    /// A client that never answers pings is dropped within 3 s; one that does is not.
    SilentClientDropped,
    /// A publisher at 30 fps, a subscriber sending a PLI every 25 ms for 2.5 s: the
    /// publisher is asked for keyframes at least 3 times, never two closer than this.
    KeyframeCap { min_gap: Duration },
    /// A publisher at 1 fps (so a request waits up to 1 s for its keyframe), a
    /// subscriber sending a PLI every 25 ms for 2 s: the publisher's keyframe requests
    /// come at most this far apart (the median gap).
    KeyframeRetry { max_median_gap: Duration },
    /// The server announces a candidate on 127.0.0.1.
    LoopbackCandidate,
    /// The server announces no candidate at all.
    NoCandidate,
    /// Every candidate announces `NAT_IP`.
    NatCandidates,
    /// Every candidate is on `{udp}`.
    MuxPort,
    /// Every candidate is within `{udp}`..=`{udp_max}`.
    PortRange,
    /// A connected participant that stops all media is told `peer_failed` within this.
    PeerFailedWithin(Duration),
    /// An idle connected participant: the wire (UDP in this network namespace) is
    /// never quiet for this long.
    ConsentChecks { max_quiet: Duration },
    /// `joined` has a TURN entry for `TURN_URL` with a valid REST credential expiring in
    /// this many seconds.
    TurnCredential(u64),
    /// A second participant in a room is refused with `room_full`.
    RoomFull,
    /// A second room is refused with `too_many_rooms`.
    TooManyRooms,
    /// An audio + video offer is refused with `too_many_tracks`.
    TooManyTracks,
    /// A 4 KB frame closes the socket with 1009.
    FrameTooLarge,
    /// A 300-byte chat message is refused with `message_too_large`.
    ChatTooLarge,
    /// Room "abcde" is refused with `invalid_room`.
    RoomNameTooLong,
    /// Name "abcde" is refused with `invalid_name`.
    DisplayNameTooLong,
    /// Pings (`ping` frames) sent so: `rate_limited` before every one is answered.
    SignallingFlood(Pattern),
    /// Chat messages sent so: `rate_limited` before a fence sent after them is.
    ChatFlood(Pattern),
    /// The third join from 127.0.0.1 is refused with `rate_limited`.
    JoinsPerIp,
    /// A join without a token is refused with `unauthorized`; one with a token signed
    /// with `AUTH_SECRET` gets in.
    TokenRequired,
    /// A token signed with `AUTH_SECRET` but without this claim (`aud` or `iss`) is
    /// refused with `unauthorized`; one with the claim set to this value gets in.
    ClaimRequired(&'static str, &'static str),
    /// GET /admin/rooms: 200 with `ADMIN_KEY`, 401 with another key.
    AdminApi,
    /// A socket that never joins is closed with 4408 within 3 s.
    JoinTimeout,
    /// A WebSocket from a page at https://app.example.com is accepted.
    OriginAllowed,
    /// Three joins from 127.0.0.1, forwarded (in this header) for three different
    /// addresses, all get in (`limits.joins_per_ip_per_minute` is 2).
    ForwardedJoins(&'static str),
    /// With two sockets open, a third gets this HTTP status.
    ConnectionsCapped(u16),
    /// A participant kicked without a chosen ban gets back in within 4 s.
    KickBanOver,
    /// A room closed without a chosen time opens again within 4 s.
    RoomReopens,
    /// The log has the "no auth.secret" warning and no info line.
    WarnOnly,
    /// Every log line is a JSON object.
    JsonLog,
    /// The server sends a STUN Binding request to `127.0.0.1:{port2}` when it gathers.
    ServerStun,
    /// A fake TURN credentials provider on `{port2}` (see provider_probes.rs).
    Provider(ProviderProbe),
}

/// How a flood is sent: `at_once` messages, then `then` more `every` apart.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    pub at_once: usize,
    pub then: usize,
    pub every: Duration,
}

impl Pattern {
    fn total(&self) -> usize {
        self.at_once + self.then
    }

    /// Waits until message `i` is due (the previous one just went).
    async fn wait_before(&self, i: usize) {
        if i >= self.at_once {
            tokio::time::sleep(self.every).await;
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at once", self.at_once)?;
        if self.then > 0 {
            write!(f, ", then {} every {:?}", self.then, self.every)?;
        }
        Ok(())
    }
}

pub async fn probe(p: Probe, r: &Run) -> Res {
    let addr = r.addr;
    match p {
        Probe::Listen => listen(r).await,
        Probe::WebRoot => web_root(r).await,
        Probe::Threads(name) => threads(r, name).await,
        Probe::ShutdownBudget(budget) => shutdown_budget(r, budget),
        Probe::IceServers => ice_servers(addr).await,
        Probe::Pings => pings(addr).await,
        Probe::SilentClientDropped => silent_client_dropped(addr).await,
        Probe::ResumeGraceEnds => resume_grace_ends(addr).await,
        Probe::KeyframeCap { min_gap } => keyframe_cap(addr, min_gap).await,
        Probe::KeyframeRetry { max_median_gap } => keyframe_retry(addr, max_median_gap).await,
        Probe::LoopbackCandidate => {
            let c = announced_candidates(addr).await?;
            check(c.iter().any(|c| c.address == "127.0.0.1"), || {
                format!("no candidate on 127.0.0.1: {}", lines(&c))
            })
        }
        Probe::NoCandidate => {
            let c = announced_candidates(addr).await?;
            check(c.is_empty(), || format!("candidates: {}", lines(&c)))
        }
        Probe::NatCandidates => {
            let c = announced_candidates(addr).await?;
            check(
                !c.is_empty() && c.iter().all(|c| c.address == NAT_IP),
                || format!("want every candidate on {NAT_IP}: {}", lines(&c)),
            )
        }
        Probe::MuxPort => {
            let c = announced_candidates(addr).await?;
            let port = r.vars.udp;
            check(!c.is_empty() && c.iter().all(|c| c.port == port), || {
                format!("want every candidate on port {port}: {}", lines(&c))
            })
        }
        Probe::PortRange => {
            let c = announced_candidates(addr).await?;
            let range = r.vars.udp..=r.vars.udp_max();
            check(
                !c.is_empty() && c.iter().all(|c| range.contains(&c.port)),
                || format!("want every candidate in ports {range:?}: {}", lines(&c)),
            )
        }
        Probe::PeerFailedWithin(within) => peer_failed_within(addr, within).await,
        Probe::ConsentChecks { max_quiet } => consent_checks(addr, max_quiet).await,
        Probe::TurnCredential(ttl) => turn_credential(addr, ttl).await,
        Probe::RoomFull => {
            let (_a, _) = joined(addr, "small", "A").await?;
            refused(join(addr, "small", "B", None).await?.1, "room_full")
        }
        Probe::TooManyRooms => {
            let (_a, _) = joined(addr, "first", "A").await?;
            refused(join(addr, "second", "B", None).await?.1, "too_many_rooms")
        }
        Probe::TooManyTracks => too_many_tracks(addr).await,
        Probe::FrameTooLarge => frame_too_large(addr).await,
        Probe::ChatTooLarge => chat_too_large(addr).await,
        Probe::RoomNameTooLong => refused(join(addr, "abcde", "A", None).await?.1, "invalid_room"),
        Probe::DisplayNameTooLong => {
            refused(join(addr, "names", "abcde", None).await?.1, "invalid_name")
        }
        Probe::SignallingFlood(pattern) => signalling_flood(addr, pattern).await,
        Probe::ChatFlood(pattern) => chat_flood(addr, pattern).await,
        Probe::JoinsPerIp => joins_per_ip(addr).await,
        Probe::TokenRequired => token_required(addr).await,
        Probe::ClaimRequired(claim, value) => claim_required(addr, claim, value).await,
        Probe::AdminApi => admin_api(addr).await,
        Probe::JoinTimeout => join_timeout(addr).await,
        Probe::OriginAllowed => {
            let ws = Ws::connect_with(addr, &[("Origin", "https://app.example.com")]).await?;
            check(ws.is_ok(), || format!("refused with {:?}", ws.err()))
        }
        Probe::ForwardedJoins(header) => forwarded_joins(addr, header).await,
        Probe::ConnectionsCapped(status) => connections_capped(addr, status).await,
        Probe::KickBanOver => kick_ban_over(addr).await,
        Probe::RoomReopens => room_reopens(addr).await,
        Probe::WarnOnly => warn_only(r).await,
        Probe::JsonLog => json_log(r).await,
        Probe::ServerStun => super::provider_probes::server_stun(addr, r.vars.port2).await,
        Probe::Provider(p) => super::provider_probes::provider(p, addr, r.vars.port2).await,
    }
}

fn check(ok: bool, why: impl FnOnce() -> String) -> Res {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn lines(c: &[Candidate]) -> String {
    let l: Vec<&str> = c.iter().map(|c| c.line.as_str()).collect();
    format!("{l:?}")
}

fn refused(result: JoinResult, want: &str) -> Res {
    match result {
        JoinResult::Refused(code) if code == want => Ok(()),
        other => Err(format!("want {want}, got {other:?}")),
    }
}

async fn listen(r: &Run) -> Res {
    let moved = SocketAddr::from(([127, 0, 0, 1], r.vars.port2));
    let health = healthz(moved).await?;
    check(health["status"] == "ok", || format!("healthz: {health}"))?;
    let base = SocketAddr::from(([127, 0, 0, 1], r.vars.port));
    check(tokio::net::TcpStream::connect(base).await.is_err(), || {
        format!("also listening on the base file's {base}")
    })
}

async fn web_root(r: &Run) -> Res {
    let (status, body) = http_get(r.addr, "/", &[]).await?;
    let marker = web_marker(&r.vars);
    check(status == 200 && body.contains(marker.trim()), || {
        let start: String = body.chars().take(80).collect();
        format!("GET / answered {status} {start:?}")
    })
}

async fn threads(r: &Run, name: &str) -> Res {
    healthz(r.addr).await?;
    let want = r.vars.workers;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let n = r
            .thread_names()
            .iter()
            .filter(|c| c.as_str() == name)
            .count();
        if n == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{n} threads named {name:?}, want {want}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn shutdown_budget(r: &Run, budget: &str) -> Res {
    let status = tokio::task::block_in_place(|| r.stop()).ok_or("already stopped")??;
    check(status.success(), || format!("exit status {status}"))?;
    let log = r.log();
    let line = log
        .lines()
        .find(|l| l.contains("shutting down"))
        .ok_or_else(|| format!("no \"shutting down\" line in:\n{log}"))?;
    let want = format!("budget={budget}");
    check(line.contains(&want), || format!("want {want}: {line}"))
}

async fn ice_servers(addr: SocketAddr) -> Res {
    match join(addr, "ice", "Ann", None).await?.1 {
        JoinResult::Joined { ice_servers, .. } => {
            check(ice_servers.iter().any(|s| s.urls == [STUN_URL]), || {
                format!("joined lists {ice_servers:?}")
            })
        }
        JoinResult::Refused(code) => Err(format!("join refused: {code}")),
    }
}

async fn pings(addr: SocketAddr) -> Res {
    let mut ws = Ws::connect(addr).await?;
    let deadline = Instant::now() + Duration::from_millis(1200);
    let mut pings = 0;
    loop {
        match ws.next(deadline).await {
            Ok(Frame::Ping) => pings += 1,
            Ok(Frame::Closed(c)) => return Err(format!("closed ({c:?})")),
            Ok(Frame::Msg(_)) => {}
            Err(_) => break,
        }
    }
    check(pings >= 3, || format!("{pings} pings in 1.2 s"))
}

/// Waits until `/healthz` reports `want` connections.
async fn connections(addr: SocketAddr, want: u64, within: Duration) -> Res {
    let deadline = Instant::now() + within;
    loop {
        let n = healthz(addr).await?["connections"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if n == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{n} connections after {within:?}, want {want}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn silent_client_dropped(addr: SocketAddr) -> Res {
    use futures_util::StreamExt;
    // Never read, so never answers a ping.
    let silent = Ws::connect(addr).await?;
    // Reads all the time, so answers every ping.
    let mut lively = Ws::connect(addr).await?;
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = lively.inner.next().await {} });
    let result = async {
        connections(addr, 2, Duration::from_secs(2)).await?;
        connections(addr, 1, Duration::from_secs(3))
            .await
            .map_err(|e| format!("the silent client was not dropped: {e}"))?;
        check(!reader.is_finished(), || {
            "the client that answers pings was dropped too".into()
        })
    }
    .await;
    reader.abort();
    drop(silent);
    result
}

/// Participants in /healthz.
async fn participants(addr: SocketAddr) -> Res<u64> {
    Ok(healthz(addr).await?["participants"]
        .as_u64()
        .unwrap_or(u64::MAX))
}

async fn resume_grace_ends(addr: SocketAddr) -> Res {
    let (ws, _id) = joined(addr, "grace", "Gone").await?;
    drop(ws); // TCP closed, no close frame: the participant waits for a resume
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = participants(addr).await?;
    check(n == 1, || {
        format!("{n} participants 0.5 s after the socket dropped, want 1")
    })?;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = participants(addr).await?;
        if n == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{n} participants 3 s after the socket dropped"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn join_participant(o: ParticipantOptions) -> Res<Participant> {
    let name = o.name.clone();
    tokio::time::timeout(JOIN_WITHIN, Participant::join(o))
        .await
        .map_err(|_| format!("{name} did not join in time"))?
        .map_err(|e| format!("{name} joins: {e}"))
}

async fn publisher_connected(p: &Participant) -> Res {
    p.wait_for("publisher connected", JOIN_WITHIN, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::PublisherState(RTCPeerConnectionState::Connected)))
            .then_some(())
    })
    .await
    .map_err(|e| e.to_string())
}

/// When a publisher at `fps` is asked for keyframes while a subscriber sends a PLI
/// every 25 ms, `plis` times.
/// `subscribers` subscribe to one publisher's video and ask for keyframes every 25 ms
/// for `plis` ticks, subscriber k starting k × 100 ms after the first (each
/// subscriber's own requests are budgeted, `feedback.rs`: the cap across them is what
/// the up track adds). Returns the gaps between the requests the publisher got.
async fn keyframe_requests(
    addr: SocketAddr,
    fps: u32,
    subscribers: usize,
    plis: usize,
) -> Res<Vec<Duration>> {
    let mut o = options(addr, "kf", "Pub");
    o.video = Some(VideoOptions {
        fps,
        ..VideoOptions::default()
    });
    let publisher = join_participant(o).await?;
    let mut subs = Vec::new();
    for k in 0..subscribers {
        let subscriber = join_participant(options(addr, "kf", &format!("Sub{k}"))).await?;
        subscriber
            .wait_media("video from Pub", JOIN_WITHIN, |t| {
                t.iter()
                    .any(|t| t.kind == Some(MediaKind::Video) && t.packets > 0)
            })
            .await
            .map_err(|e| e.to_string())?;
        let pc = Arc::clone(subscriber.subscriber_connection());
        let mut ssrc = None;
        for receiver in pc.get_receivers().await {
            for track in receiver.tracks().await {
                if track.kind() == RTPCodecType::Video {
                    ssrc = Some(track.ssrc());
                }
            }
        }
        let ssrc = ssrc.ok_or("no video receiver on the subscriber connection")?;
        subs.push((subscriber, pc, ssrc));
    }
    let before = publisher.sent(|log| log.keyframe_requests.len());
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    for i in 0..plis {
        tick.tick().await;
        for (k, (_, pc, ssrc)) in subs.iter().enumerate() {
            if i * 25 < k * 100 {
                continue;
            }
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: *ssrc,
            };
            pc.write_rtcp(&[Box::new(pli)])
                .await
                .map_err(|e| format!("PLI: {e}"))?;
        }
    }
    let asked = publisher.sent(|log| log.keyframe_requests[before..].to_vec());
    let gaps: Vec<Duration> = asked.windows(2).map(|w| w[1] - w[0]).collect();
    println!("      keyframe requests {:?} apart", Millis(&gaps));
    Ok(gaps)
}

/// Durations in whole milliseconds, for the log.
struct Millis<'a>(&'a [Duration]);

impl std::fmt::Debug for Millis<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms: Vec<u128> = self.0.iter().map(Duration::as_millis).collect();
        write!(f, "{ms:?} ms")
    }
}

async fn keyframe_cap(addr: SocketAddr, min_gap: Duration) -> Res {
    // Six subscribers, each asking from 100 ms after the one before.
    let gaps = keyframe_requests(addr, 30, 6, 100).await?;
    let closest = gaps.iter().min().copied().unwrap_or_default();
    check(gaps.len() >= 2 && closest >= min_gap, || {
        format!(
            "keyframe requests {:?} apart during 100 PLIs in 2.5 s; want 3+ requests, \
             none closer than {min_gap:?}",
            Millis(&gaps)
        )
    })
}

async fn keyframe_retry(addr: SocketAddr, max_median_gap: Duration) -> Res {
    let mut gaps = keyframe_requests(addr, 1, 1, 80).await?;
    gaps.sort();
    let median = gaps.get(gaps.len() / 2).copied().unwrap_or(Duration::MAX);
    check(gaps.len() >= 4 && median <= max_median_gap, || {
        format!(
            "keyframe requests a median {median:?} apart during 80 PLIs in 2 s; want \
             5+ requests, a median {max_median_gap:?} apart or less"
        )
    })
}

async fn peer_failed_within(addr: SocketAddr, within: Duration) -> Res {
    let p = join_participant(options(addr, "gone", "Ann")).await?;
    publisher_connected(&p).await?;
    p.close_media().await;
    let start = Instant::now();
    p.wait_error("peer_failed", within)
        .await
        .map_err(|e| format!("{e} ({:?} after close_media)", start.elapsed()))?;
    println!("      peer_failed {:?} after close_media", start.elapsed());
    Ok(())
}

/// The namespace's UDP datagrams received so far (`/proc/net/snmp`, as `netstat -su`
/// shows them): the test runs in a network namespace of its own, so these are the
/// packets between this test's participants and the server.
fn udp_datagrams() -> Res<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").map_err(|e| e.to_string())?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next(), udp.next());
    let (Some(names), Some(values)) = (names, values) else {
        return Err("no Udp lines in /proc/net/snmp".into());
    };
    let i = names
        .split_whitespace()
        .position(|n| n == "InDatagrams")
        .ok_or("no InDatagrams")?;
    values
        .split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "bad InDatagrams".into())
}

/// A participant that is connected but sends and receives nothing (no tracks, an idle
/// chat channel): what crosses the wire is ICE consent checks, the server's every
/// `keepalive_interval` and the client's every 2 s. Watched for 2.5 s, the wire must
/// never be quiet for `max_quiet`.
async fn consent_checks(addr: SocketAddr, max_quiet: Duration) -> Res {
    let p = join_participant(options(addr, "idle", "Ann")).await?;
    publisher_connected(&p).await?;
    // The chat channel is open and idle once a direct message to nobody is refused.
    chat_fence(&p).await?;
    p.wait_error("bad_message", JOIN_WITHIN)
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (mut last, mut last_change) = (udp_datagrams()?, start);
    let mut quiet = Duration::ZERO;
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    while start.elapsed() < Duration::from_millis(2500) {
        tick.tick().await;
        let now = udp_datagrams()?;
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        quiet = quiet.max(last_change.elapsed());
    }
    println!("      quiet for at most {quiet:?}");
    check(quiet < max_quiet, || {
        format!("no UDP packet for {quiet:?}, want none quieter than {max_quiet:?}")
    })
}

async fn turn_credential(addr: SocketAddr, ttl: u64) -> Res {
    let (participant_id, ice_servers) = match join(addr, "turn", "Ann", None).await?.1 {
        JoinResult::Joined {
            participant_id,
            ice_servers,
        } => (participant_id, ice_servers),
        JoinResult::Refused(code) => return Err(format!("join refused: {code}")),
    };
    let entry = ice_servers
        .iter()
        .find(|s| s.urls == [TURN_URL])
        .ok_or_else(|| format!("no entry for {TURN_URL} in {ice_servers:?}"))?;
    let user = entry.username.as_deref().ok_or("no username")?;
    let credential = entry.credential.as_deref().ok_or("no credential")?;
    let (expiry, who) = user.split_once(':').ok_or("username without ':'")?;
    check(who == participant_id, || {
        format!("username {user} names another participant")
    })?;
    let expiry: u64 = expiry
        .parse()
        .map_err(|_| format!("bad expiry in {user}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    check(expiry.abs_diff(now + ttl) <= 10, || {
        format!("expires in {} s, want {ttl} s", expiry as i64 - now as i64)
    })?;
    let want = plaza::turn::rest_credential(TURN_SECRET, user);
    check(credential == want, || {
        format!("credential {credential} is not HMAC(turn secret, {user}) = {want}")
    })
}

async fn too_many_tracks(addr: SocketAddr) -> Res {
    let (mut ws, _) = joined(addr, "tracks", "A").await?;
    let offer =
        serde_json::json!({"type": "offer", "target": "publisher", "sdp": real_offer().await?});
    ws.send(offer.to_string()).await?;
    let answer = ws
        .until(
            "an answer or an error",
            Duration::from_secs(5),
            |f| match f {
                Frame::Msg(ServerMessage::Answer { .. }) => Some("answer".to_string()),
                Frame::Msg(ServerMessage::Error { code, .. }) => Some(code.clone()),
                _ => None,
            },
        )
        .await?;
    check(answer == "too_many_tracks", || {
        format!("an audio+video offer got {answer}")
    })
}

async fn frame_too_large(addr: SocketAddr) -> Res {
    let mut ws = Ws::connect(addr).await?;
    ws.send(format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(4000)))
        .await?;
    let got = ws
        .until(
            "an answer or the close",
            Duration::from_secs(5),
            |f| match f {
                Frame::Msg(m) => Some(format!("{m:?}")),
                Frame::Closed(code) => Some(format!("close {code:?}")),
                Frame::Ping => None,
            },
        )
        .await?;
    check(got == "close Some(1009)", || {
        format!("a 4 KB frame got {got}")
    })
}

/// The first error among `codes` the participant was sent.
async fn first_error(p: &Participant, codes: &[&str]) -> Res<String> {
    p.wait_for(&format!("one of {codes:?}"), Duration::from_secs(5), |ev| {
        ev.iter().find_map(|e| match e {
            Event::Server(ServerMessage::Error { code, .. }) if codes.contains(&code.as_str()) => {
                Some(code.clone())
            }
            _ => None,
        })
    })
    .await
    .map_err(|e| e.to_string())
}

/// A direct message to nobody: its `bad_message` comes after the verdicts on every
/// chat message sent before it (one session, one ordered channel).
async fn chat_fence(p: &Participant) -> Res {
    p.chat("fence", Some("Pnobody"))
        .await
        .map_err(|e| e.to_string())
}

async fn chat_too_large(addr: SocketAddr) -> Res {
    let p = join_participant(options(addr, "chat", "Ann")).await?;
    p.chat(&"x".repeat(300), None)
        .await
        .map_err(|e| e.to_string())?;
    chat_fence(&p).await?;
    let code = first_error(&p, &["message_too_large", "bad_message"]).await?;
    check(code == "message_too_large", || {
        "a 300-byte chat message went through".into()
    })
}

async fn chat_flood(addr: SocketAddr, pattern: Pattern) -> Res {
    let p = join_participant(options(addr, "chat", "Ann")).await?;
    for i in 0..pattern.total() {
        pattern.wait_before(i).await;
        p.chat(&format!("hello {i}"), None)
            .await
            .map_err(|e| e.to_string())?;
    }
    chat_fence(&p).await?;
    let code = first_error(&p, &["rate_limited", "bad_message"]).await?;
    check(code == "rate_limited", || {
        format!("chat messages {pattern}: all relayed")
    })
}

async fn signalling_flood(addr: SocketAddr, pattern: Pattern) -> Res {
    let mut ws = Ws::connect(addr).await?;
    for i in 0..pattern.total() {
        pattern.wait_before(i).await;
        ws.send(r#"{"type":"ping"}"#).await?;
    }
    let mut pongs = 0;
    let verdict = ws
        .until(
            "every pong or an error",
            Duration::from_secs(5),
            |f| match f {
                Frame::Msg(ServerMessage::Pong) => {
                    pongs += 1;
                    (pongs == pattern.total()).then(|| "every one answered".to_string())
                }
                Frame::Msg(ServerMessage::Error { code, .. }) => Some(code.clone()),
                _ => None,
            },
        )
        .await?;
    check(verdict == "rate_limited", || {
        format!("pings {pattern}: {verdict}")
    })
}

async fn joins_per_ip(addr: SocketAddr) -> Res {
    let mut kept = Vec::new();
    for i in 0..3 {
        match join(addr, "joins", &format!("J{i}"), None).await? {
            (ws, JoinResult::Joined { .. }) => kept.push(ws),
            (_, JoinResult::Refused(code)) => {
                return check(i == 2 && code == "rate_limited", || {
                    format!("join {} refused: {code}", i + 1)
                })
            }
        }
    }
    Err("three joins from 127.0.0.1 all got in".into())
}

async fn token_required(addr: SocketAddr) -> Res {
    refused(join(addr, "vip", "NoToken", None).await?.1, "unauthorized")?;
    let claims = Claims {
        room: "vip".into(),
        sub: "ann".into(),
        name: None,
        publish: true,
        subscribe: true,
        exp: expiry_in(Duration::from_secs(60)),
        iat: None,
        aud: Vec::new(),
        iss: None,
    };
    let token = mint(AUTH_SECRET, &claims).map_err(|e| e.to_string())?;
    match join(addr, "vip", "Ann", Some(&token)).await?.1 {
        JoinResult::Joined { .. } => Ok(()),
        JoinResult::Refused(code) => Err(format!("a token signed with the secret: {code}")),
    }
}

async fn claim_required(addr: SocketAddr, claim: &str, value: &str) -> Res {
    let mut claims = Claims::new("vip", "ann", Duration::from_secs(60));
    let without = mint(AUTH_SECRET, &claims).map_err(|e| e.to_string())?;
    match claim {
        "aud" => claims.aud = vec![value.into()],
        _ => claims.iss = Some(value.into()),
    }
    let with = mint(AUTH_SECRET, &claims).map_err(|e| e.to_string())?;
    refused(
        join(addr, "vip", "NoClaim", Some(&without)).await?.1,
        "unauthorized",
    )?;
    match join(addr, "vip", "Ann", Some(&with)).await?.1 {
        JoinResult::Joined { .. } => Ok(()),
        JoinResult::Refused(code) => Err(format!("a token with {claim} {value:?}: {code}")),
    }
}

async fn admin_api(addr: SocketAddr) -> Res {
    let (status, body) = http_get(addr, "/admin/rooms", &[("X-Api-Key", ADMIN_KEY)]).await?;
    check(status == 200 && body.trim() == "[]", || {
        format!("with the key: {status} {body}")
    })?;
    let (status, _) = http_get(
        addr,
        "/admin/rooms",
        &[("X-Api-Key", "not-the-key-0123456789")],
    )
    .await?;
    check(status == 401, || format!("with another key: {status}"))
}

async fn warn_only(r: &Run) -> Res {
    healthz(r.addr).await?;
    let log = r.log();
    check(log.contains("no auth.secret"), || {
        format!("no warning in the log:\n{log}")
    })?;
    // Both logged at info before /healthz can answer.
    check(
        !log.contains("media plane ready") && !log.contains("listening"),
        || format!("info lines in the log:\n{log}"),
    )
}

async fn json_log(r: &Run) -> Res {
    healthz(r.addr).await?;
    let log = r.log();
    let mut ready = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|_| format!("not JSON: {line}"))?;
        check(v.is_object(), || format!("not an object: {line}"))?;
        ready |= v["fields"]["message"] == "media plane ready";
    }
    check(ready, || {
        format!("no \"media plane ready\" object in:\n{log}")
    })
}

async fn join_timeout(addr: SocketAddr) -> Res {
    let mut ws = Ws::connect(addr).await?;
    let code = ws
        .until("the close", Duration::from_secs(3), |f| match f {
            Frame::Closed(code) => Some(*code),
            _ => None,
        })
        .await?;
    check(code == Some(4408), || format!("closed with {code:?}"))
}

async fn forwarded_joins(addr: SocketAddr, header: &str) -> Res {
    let mut kept = Vec::new();
    for i in 1..=3 {
        let value = match header {
            "forwarded" => format!("for=203.0.113.{i};proto=https"),
            _ => format!("203.0.113.{i}"),
        };
        let ws = Ws::connect_with(addr, &[(header, &value)])
            .await?
            .map_err(|status| format!("upgrade refused: {status}"))?;
        match join_on(ws, "fwd", &format!("F{i}"), None).await? {
            (ws, JoinResult::Joined { .. }) => kept.push(ws),
            (_, JoinResult::Refused(code)) => return Err(format!("join {i} refused: {code}")),
        }
    }
    Ok(())
}

async fn connections_capped(addr: SocketAddr, status: u16) -> Res {
    let _first = Ws::connect(addr).await?;
    let _second = Ws::connect(addr).await?;
    match Ws::connect_with(addr, &[]).await? {
        Err(got) => check(got == status, || format!("third refused with {got}")),
        Ok(_) => Err("a third connection got in".into()),
    }
}

/// Until a join gets in, for at most 4 s: Ok, or what refused the last one.
async fn rejoins_within_4s(addr: SocketAddr, room: &str, name: &str) -> Res {
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        match join(addr, room, name, None).await?.1 {
            JoinResult::Joined { .. } => return Ok(()),
            JoinResult::Refused(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            JoinResult::Refused(code) => return Err(format!("still refused after 4 s: {code}")),
        }
    }
}

async fn admin_delete(addr: SocketAddr, path: &str) -> Res {
    let (status, body) = http_request(addr, "DELETE", path, &[("X-Api-Key", ADMIN_KEY)]).await?;
    check(status == 202, || format!("DELETE {path}: {status} {body}"))
}

async fn kick_ban_over(addr: SocketAddr) -> Res {
    let (mut ws, id) = joined(addr, "kick", "Ann").await?;
    admin_delete(addr, &format!("/admin/rooms/kick/participants/{id}")).await?;
    ws.until("kicked", Duration::from_secs(5), |f| match f {
        Frame::Msg(ServerMessage::Error { code, .. }) if code == "kicked" => Some(()),
        _ => None,
    })
    .await?;
    rejoins_within_4s(addr, "kick", "Ann").await
}

async fn room_reopens(addr: SocketAddr) -> Res {
    let (mut ws, _) = joined(addr, "closing", "Ann").await?;
    admin_delete(addr, "/admin/rooms/closing").await?;
    ws.until("kicked", Duration::from_secs(5), |f| match f {
        Frame::Msg(ServerMessage::Error { code, .. }) if code == "kicked" => Some(()),
        _ => None,
    })
    .await?;
    rejoins_within_4s(addr, "closing", "Bob").await
}
