//! Building one peer connection of the SFU: the codecs we forward (Opus, VP8, H.264 — nothing a
//! subscriber could not be given as is), the interceptors (NACK, RTCP reports), ICE-lite with
//! our own credentials (they route datagrams on the shared socket), the DTLS server role, SRTP
//! preferring AEAD-AES-128-GCM, and the one host candidate: the shared UDP port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distributions::Alphanumeric;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::Registry;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};

pub(crate) type RtcResult<T> = Result<T, rtc::shared::error::Error>;

/// The ICE credentials of one peer connection; the username fragment is its address on the
/// shared socket until its remote address is known.
#[derive(Debug, Clone)]
pub(crate) struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl IceCredentials {
    pub(crate) fn random() -> Self {
        let mut rng = rand::thread_rng();
        let mut text = |n: usize| -> String {
            (&mut rng)
                .sample_iter(&Alphanumeric)
                .take(n)
                .map(char::from)
                .collect()
        };
        // RFC 8839: ufrag ≥ 4 and pwd ≥ 22 characters of ice-char.
        Self {
            ufrag: text(16),
            pwd: text(32),
        }
    }
}

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

/// The codecs the SFU negotiates. Without RTX: retransmissions come from the NACK responder
/// on the same SSRC.
fn media_engine() -> RtcResult<MediaEngine> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    let video_feedback = vec![
        feedback("goog-remb", ""),
        feedback("ccm", "fir"),
        feedback("nack", ""),
        feedback("nack", "pli"),
    ];
    let video = [
        (MIME_TYPE_VP8, "", 96),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
        ),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            104,
        ),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032",
            106,
        ),
    ];
    for (mime, fmtp, payload_type) in video {
        engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: fmtp.to_owned(),
                    rtcp_feedback: video_feedback.clone(),
                },
                payload_type,
            },
            RtpCodecKind::Video,
        )?;
    }
    Ok(engine)
}

/// Which side of the SFU a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerKind {
    /// Sends media in: the library asks it for lost packets (NACK generator) and reports.
    Publisher,
    /// Receives media: RTCP reports, and its feedback (PLI, FIR, NACK) handed to the endpoint
    /// (`crate::feedback`), which answers NACKs from the publisher's one retransmission buffer,
    /// not from a copy per subscriber connection.
    Subscriber,
}

/// A fresh peer connection answering on the shared socket.
pub(crate) fn new_peer_connection(
    now: Instant,
    credentials: &IceCredentials,
    kind: PeerKind,
) -> RtcResult<RTCPeerConnection> {
    let mut engine = media_engine()?;
    let registry = match kind {
        PeerKind::Publisher => register_default_interceptors(Registry::new(), &mut engine)?,
        PeerKind::Subscriber => {
            configure_simulcast_extension_headers(&mut engine)?;
            configure_rtcp_reports(Registry::new()).with(
                rtc::interceptor::Slot::from(crate::feedback::FEEDBACK_SLOT),
                crate::feedback::DeliverFeedback::default(),
            )
        }
    };
    let settings = SettingEngineBuilder::new()
        // The server only answers connectivity checks: no candidates to gather or check.
        .with_lite(true)
        .with_ice_credentials(credentials.ufrag.clone(), credentials.pwd.clone())
        .with_answering_dtls_role(RTCDtlsRole::Server)
        // A client that vanishes (closed tab, lost network) is disconnected after 5 s without
        // checks and failed — removed, its viewers told — 10 s later, instead of the default 25.
        .with_ice_timeouts(
            Some(Duration::from_secs(5)),
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(2)),
        )
        .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm])
        .build();
    RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)
}

/// Adds the shared socket as the connection's only (host) candidate.
pub(crate) fn add_host_candidate(
    pc: &mut RTCPeerConnection,
    candidate: SocketAddr,
) -> RtcResult<()> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: candidate.ip().to_string(),
            port: candidate.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&host).to_json()?)
}
