//! The media plane: everything that touches webrtc-rs lives in this module, so moving
//! to another webrtc-rs line (or another send path) changes one place.
//!
//! - `MediaPlane`: the dedicated Tokio runtime media runs on, and the webrtc-rs `API`
//!   built once from the ICE configuration (interfaces, NAT 1:1, UDP mux or port range).
//! - `Peer`: one peer connection; `UpTrack`: a published track and its read loop;
//!   `DownTrack`: that track as one subscriber gets it; `Forwarder`: the pure
//!   per-subscriber packet decision; `ChatChannel`: the chat data channel.

pub mod codec;
pub mod data;
pub mod down_track;
pub mod forwarder;
pub mod peer;
pub mod stats;
pub mod up_track;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use webrtc::api::interceptor_registry::{configure_rtcp_reports, configure_twcc_receiver_only};
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::udp_mux::{UDPMuxDefault, UDPMuxParams};
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::registry::Registry;

pub use self::peer::{Peer, PeerEvent, PeerEventHandler};
pub use self::stats::MediaStats;
use crate::config::IceConfig;
use crate::error::{Error, Result};
use crate::protocol::PeerTarget;

pub struct MediaPlane {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    api: Arc<API>,
    pub stats: Arc<MediaStats>,
    /// The single UDP port's socket, when the UDP mux is on.
    udp_mux: Option<Arc<UDPMuxDefault>>,
    udp_mux_addr: Option<SocketAddr>,
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
        Ok(Arc::new(MediaPlane {
            runtime: Mutex::new(Some(runtime)),
            handle,
            api: Arc::new(api),
            stats: Arc::new(MediaStats::default()),
            udp_mux,
            udp_mux_addr,
        }))
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The UDP mux's bound address, when the mux is on.
    pub fn udp_mux_addr(&self) -> Option<SocketAddr> {
        self.udp_mux_addr
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
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rt) = runtime {
            rt.shutdown_timeout(grace);
        }
    }
}

/// Packets each sender keeps to answer NACKs: 512 (2^9) is about 3 s of 1.5 Mbit/s video,
/// longer than any retransmission is still useful. webrtc-rs keeps 8192 by default,
/// which pinned about 10 MB of payloads per published video track.
const NACK_HISTORY_LOG2: u8 = 9;

/// The interceptor chain every Plaza peer connection (and the headless client) uses:
/// webrtc-rs's defaults (NACK generator and responder, RTCP reports, TWCC feedback to
/// publishers), with a shorter NACK history.
pub fn interceptors(media: &mut MediaEngine) -> webrtc::error::Result<Registry> {
    use webrtc::interceptor::nack::{generator::Generator, responder::Responder};
    // The codecs already list the `nack` and `nack pli` feedback (codec::register_codecs).
    let mut registry = Registry::new();
    registry.add(Box::new(
        Responder::builder().with_log2_size(NACK_HISTORY_LOG2),
    ));
    registry.add(Box::new(Generator::builder()));
    let registry = configure_rtcp_reports(registry);
    configure_twcc_receiver_only(registry, media)
}

/// ICE settings every Plaza peer connection (and the headless client) uses.
pub fn tune_ice(s: &mut SettingEngine) {
    // Browsers hide host addresses behind mDNS names when they have no media
    // permission; we never need to resolve them (their checks reach us and become
    // peer-reflexive candidates), and multicast is often unavailable on servers.
    s.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    // When we are the controlling agent (the subscriber connection), webrtc-rs by
    // default waits 1 s before nominating a pair with a peer-reflexive candidate, and
    // 2 s for a relayed one. A client's check often arrives before its trickled
    // candidate does, making it peer-reflexive, so the default cost joins a second.
    // Direct pairs are accepted at once; a relayed pair gets a short grace period for
    // a direct one to succeed first.
    s.set_host_acceptance_min_wait(Some(Duration::ZERO));
    s.set_srflx_acceptance_min_wait(Some(Duration::ZERO));
    s.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
    s.set_relay_acceptance_min_wait(Some(Duration::from_millis(300)));
}

fn build_api(ice: &IceConfig, udp_mux: Option<Arc<UDPMuxDefault>>) -> Result<API> {
    let mut media = MediaEngine::default();
    codec::register_codecs(&mut media)?;
    let registry = interceptors(&mut media)?;

    let mut s = SettingEngine::default();
    tune_ice(&mut s);
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
