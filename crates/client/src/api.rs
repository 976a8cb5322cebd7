//! The webrtc-rs setup: the API both peer connections are made from, and their
//! configuration.

use std::net::IpAddr;

use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;

use crate::ClientResult;
use plaza_protocol::IceServer;
use plaza_rtc::register_codecs;

/// The webrtc-rs API every headless participant uses: Plaza's codecs, the default
/// interceptors, candidates only on `ice_ips`. Public for other protocol adapters.
pub fn build_client_api(ice_ips: &[IpAddr]) -> ClientResult<webrtc::api::API> {
    let mut media = MediaEngine::default();
    register_codecs(&mut media)?;
    let registry = plaza_rtc::interceptors(&mut media, plaza_rtc::NackResponder::Interceptor)?;
    let mut s = SettingEngine::default();
    plaza_rtc::tune_ice(&mut s);
    plaza_rtc::tune_srtp(&mut s);
    if !ice_ips.is_empty() {
        let allowed = ice_ips.to_vec();
        s.set_ip_filter(Box::new(move |ip| allowed.contains(&ip)));
        s.set_include_loopback_candidate(ice_ips.iter().any(IpAddr::is_loopback));
    }
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build())
}

/// The configuration of both peer connections: the ICE (STUN/TURN) servers, and with
/// `relay_only` only relayed candidates, like a client behind a strict firewall.
pub(crate) fn rtc_configuration(ice_servers: &[IceServer], relay_only: bool) -> RTCConfiguration {
    RTCConfiguration {
        ice_servers: plaza_rtc::rtc_ice_servers(ice_servers),
        ice_transport_policy: if relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        },
        ..Default::default()
    }
}
