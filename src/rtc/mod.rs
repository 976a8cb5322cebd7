//! The media plane: everything that touches webrtc-rs lives in this module, so moving
//! to another webrtc-rs line (or another send path) changes one place.
//!
//! - `MediaPlane`: the dedicated Tokio runtime media runs on, and the webrtc-rs `API`
//!   built once from the ICE configuration (interfaces, NAT 1:1, UDP mux or port range).
//! - `Peer`: one peer connection; `UpTrack`: a published track and its read loop;
//!   `DownTrack`: that track as one subscriber gets it; `Forwarder`: the pure
//!   per-subscriber packet decision; `feedback`: what a subscriber's RTCP makes Plaza
//!   do (its keyframe requests, its video paused on heavy loss); `ChatChannel`: the
//!   chat data channel.

pub mod data;
pub mod down_track;
mod events;
pub mod feedback;
pub mod forwarder;
pub mod keyframe;
mod padding;
pub mod peer;
pub mod probe;
pub mod retransmit;
mod slots;
pub mod stats;
pub mod up_track;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::ice::udp_mux::{UDPMuxDefault, UDPMuxParams};
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::configuration::RTCConfiguration;

pub use self::data::ChatChannel;
pub use self::down_track::DownTrack;
pub use self::keyframe::KeyframePolicy;
pub use self::peer::{
    ConnectionState, DataChannel, DataMessage, IceConnectionState, Peer, PeerEvent,
    PeerEventHandler, RemoteTrack, SenderHandle,
};
pub use self::stats::MediaStats;
pub use self::up_track::UpTrack;
use plaza_protocol::PeerTarget;
use plaza_rtc::codec;

use crate::config::IceConfig;
use crate::error::{Error, Result};

/// Locks a std mutex around plain per-track or per-connection state: a poisoned lock
/// would mean a panic mid-update elsewhere, and the state is still a valid plain struct
/// to go on with (the media plane must not die of one bad update).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// webrtc-rs's errors become ours here, at the edge of the media module (nothing else
/// names a webrtc-rs type).
impl From<webrtc::Error> for Error {
    fn from(e: webrtc::Error) -> Self {
        Error::WebRtc(e.to_string())
    }
}

pub struct MediaPlane {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    api: Arc<API>,
    pub stats: Arc<MediaStats>,
    /// The single UDP port's socket, when the UDP mux is on.
    udp_mux: Option<Arc<UDPMuxDefault>>,
    udp_mux_addr: Option<SocketAddr>,
    /// STUN/TURN servers of the server's own peer connections (`ice.servers`).
    ice_servers: Vec<RTCIceServer>,
}

impl MediaPlane {
    /// Starts the media runtime (`threads`, 0 = one per core) and builds the WebRTC API.
    pub fn new(ice: &IceConfig, threads: usize) -> Result<Arc<Self>> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            builder.worker_threads(threads);
        }
        let runtime = builder.thread_name("plaza-media").enable_all().build()?;
        let handle = runtime.handle().clone();
        // The UDP mux spawns its read loop: it must start inside the media runtime.
        let _entered = handle.enter();
        let (udp_mux, udp_mux_addr) = match ice.udp_port {
            Some(port) => {
                let socket = std::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))
                    .map_err(|e| {
                        Error::Config(format!("ice.udp_port: cannot bind UDP {port}: {e}"))
                    })?;
                socket.set_nonblocking(true)?;
                let addr = socket.local_addr()?;
                let socket = tokio::net::UdpSocket::from_std(socket)?;
                (
                    Some(UDPMuxDefault::new(UDPMuxParams::new(socket))),
                    Some(addr),
                )
            }
            None => (None, None),
        };
        let api = build_api(ice, udp_mux.clone())?;
        // What the media plane was built with, once at start: the first thing to check
        // when candidates or timeouts are not what a deployment expects.
        let udp = match (udp_mux_addr, ice.udp_port_min, ice.udp_port_max) {
            (Some(addr), _, _) => format!("one port {} (mux)", addr.port()),
            (None, Some(min), Some(max)) => format!("ports {min}-{max}"),
            _ => "ephemeral ports".into(),
        };
        tracing::info!(
            threads = runtime.metrics().num_workers(),
            udp = %udp,
            ice_ips = ?ice.ips,
            nat_1to1_ips = ?ice.nat_1to1_ips,
            disconnected_timeout = ?ice.disconnected_timeout,
            failed_timeout = ?ice.failed_timeout,
            keepalive_interval = ?ice.keepalive_interval,
            "media plane ready"
        );
        Ok(Arc::new(MediaPlane {
            runtime: Mutex::new(Some(runtime)),
            handle,
            api: Arc::new(api),
            stats: Arc::new(MediaStats::default()),
            udp_mux,
            udp_mux_addr,
            ice_servers: plaza_rtc::rtc_ice_servers(&ice.servers),
        }))
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The UDP mux's bound address, when the mux is on.
    pub fn udp_mux_addr(&self) -> Option<SocketAddr> {
        self.udp_mux_addr
    }

    /// The configuration every server-side peer connection starts from: the server's
    /// own STUN/TURN servers (`ice.servers`), if any.
    pub(super) fn rtc_configuration(&self) -> RTCConfiguration {
        RTCConfiguration {
            ice_servers: self.ice_servers.clone(),
            ..Default::default()
        }
    }

    /// Runs a future on the media runtime and waits for it from any executor.
    pub async fn run<F, T>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.handle
            .spawn(fut)
            .await
            .map_err(|e| Error::Task(e.to_string()))
    }

    /// A new peer connection whose events go to `handler`.
    pub async fn new_peer(
        self: &Arc<Self>,
        target: PeerTarget,
        handler: PeerEventHandler,
    ) -> Result<Peer> {
        Peer::new(Arc::clone(self), target, handler).await
    }

    /// Stops the media runtime, giving tasks `grace` to finish. Called once at exit.
    pub fn shutdown(&self, grace: Duration) {
        if let Some(mux) = &self.udp_mux {
            let mux = Arc::clone(mux);
            self.handle.spawn(async move {
                use webrtc::ice::udp_mux::UDPMux;
                let _ = mux.close().await;
            });
        }
        let runtime = lock(&self.runtime).take();
        if let Some(rt) = runtime {
            rt.shutdown_timeout(grace);
        }
    }
}

/// Every address of every local interface, as webrtc-ice lists them when it gathers
/// host candidates (the same call its `Net` makes), sorted, for
/// [`crate::ice_addresses::announced_addresses`]: the startup log and `plaza doctor`.
pub fn local_addresses() -> Vec<crate::ice_addresses::LocalAddress> {
    let interfaces = webrtc::util::ifaces::ifaces().unwrap_or_else(|e| {
        tracing::warn!("cannot list network interfaces: {e}");
        Vec::new()
    });
    let mut out: Vec<crate::ice_addresses::LocalAddress> = interfaces
        .into_iter()
        .filter_map(|i| {
            Some(crate::ice_addresses::LocalAddress {
                ip: i.addr?.ip(),
                interface: i.name,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn build_api(ice: &IceConfig, udp_mux: Option<Arc<UDPMuxDefault>>) -> Result<API> {
    let mut media = MediaEngine::default();
    codec::register_codecs(&mut media)?;
    // Subscribers' NACKs are answered by each down track (`retransmit.rs`).
    let registry = plaza_rtc::interceptors(&mut media, plaza_rtc::NackResponder::Application)?;

    let mut s = SettingEngine::default();
    plaza_rtc::tune_ice(&mut s);
    plaza_rtc::tune_srtp(&mut s);
    s.set_ice_timeouts(
        Some(ice.disconnected_timeout),
        Some(ice.failed_timeout),
        Some(ice.keepalive_interval),
    );
    if !ice.ips.is_empty() {
        let allowed: Vec<IpAddr> = ice.ips.clone();
        s.set_ip_filter(Box::new(move |ip| allowed.contains(&ip)));
        if ice.ips.iter().any(IpAddr::is_loopback) {
            s.set_include_loopback_candidate(true);
        }
    }
    if !ice.interfaces.is_empty() {
        let allowed = ice.interfaces.clone();
        s.set_interface_filter(Box::new(move |name| allowed.iter().any(|a| a == name)));
    }
    if !ice.nat_1to1_ips.is_empty() {
        s.set_nat_1to1_ips(ice.nat_1to1_ips.clone(), RTCIceCandidateType::Host);
    }
    if let Some(mux) = udp_mux {
        s.set_udp_network(UDPNetwork::Muxed(mux));
    } else if let (Some(min), Some(max)) = (ice.udp_port_min, ice.udp_port_max) {
        let range = EphemeralUDP::new(min, max)
            .map_err(|e| Error::Config(format!("ice.udp_port_min/max: {e}")))?;
        s.set_udp_network(UDPNetwork::Ephemeral(range));
    }
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build())
}
