//! In-process WebRTC peers for the media tests: a WHIP [`Publisher`] and a WHEP [`Subscriber`] on
//! the sans-IO `rtc` crate, each on its own UDP socket (127.0.0.1:0), its connection driven by a
//! spawned task (`handle_read` / `poll_write` / `poll_event` / `poll_read` / `handle_timeout`).
//!
//! The publisher sends synthetic but well-formed media at a real rate — 30 video frames a second
//! of a few packets each, an Opus packet every 20 ms: VP8 (payload descriptor with S bit,
//! partition index and picture id; a frame header whose bit 0 tells key from inter frames, a
//! keyframe's start code and size) or H.264 (SPS + PPS + IDR keyframes, non-IDR frames, single
//! NAL units and FU-A). Every body byte of a frame holds the layer index, so the last byte of any
//! VP8 packet or H.264 slice packet tells a subscriber which simulcast layer it gets. Keyframes
//! go out first, every `keyframe_interval` frames, and on the next frame of a layer after a PLI
//! or FIR for its SSRC (counted per layer).
//!
//! Simulcast: the `rtc` crate can send it. A track with one encoding per rid, each with its own
//! SSRC, is offered as `a=rid:<rid> send` lines and `a=simulcast:send q;h;f` (no `a=ssrc` lines);
//! the crate does not stamp the `mid` and `rid` header extensions on outgoing packets itself, so
//! the publisher sets them (with the negotiated ids) on every video packet, as browsers do on
//! theirs, and the server tells the layers apart by them.
//!
//! Inbound RTCP: `rtc` 0.21.1's interceptor chain ends with a terminus that drops every inbound
//! RTCP packet unless an interceptor marked it `Attribute::DeliverToApplication`, so the publisher
//! puts [`DeliverKeyframeRequests`] in its chain to see PLIs and FIRs.
//!
//! The subscriber records every RTP datagram at the socket (the RTP header is in clear in SRTP)
//! — so it also sees a retransmitted copy of a packet it already has, which its SRTP replay check
//! then drops — and every decrypted packet with what its payload says. It can send PLIs and
//! NACKs, and lose packets on purpose. It runs no NACK generator: every NACK is the test's.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{
    RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::TestApp;

const FRAME_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / 30);
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Body bytes per video packet (before the payload descriptor or NAL header) of the top layer;
/// halved per simulcast layer below it.
const CHUNK: usize = 400;
/// An Opus frame of silence (TOC: CELT fullband 20 ms, one frame).
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
/// Kernel receive buffer of a peer's socket (the kernel caps it at `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
const SDES_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const SDES_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// Polls `done` every 10 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, done: impl FnMut() -> bool) {
    assert!(
        eventually(timeout, done).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Polls `done` every 10 ms until it holds (true) or `timeout` passes (false).
pub async fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The media endpoint's counters (`/api/v1/media/stats`, an administrator's token).
pub async fn media_stats(app: &TestApp, admin: &str) -> Value {
    let (status, stats) = app.get(admin, "/api/v1/media/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats
}

/// Polls the media stats until `done` holds; returns them (panics naming `what` after
/// `timeout`).
pub async fn wait_media_stats(
    app: &TestApp,
    admin: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = media_stats(app, admin).await;
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}; last stats: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `body` as `application/sdp`: the status, the `Location`, the body.
async fn post_offer(
    app: &TestApp,
    token: &str,
    path: &str,
    body: String,
) -> (StatusCode, Option<String>, String) {
    let response = super::api()
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(body)
        .send()
        .await
        .expect("the SDP request is sent");
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.expect("the SDP answer is read");
    (status, location, body)
}

/// POSTs `body` as an SDP offer to `path`: the status and the JSON body (null for an answer).
pub async fn post_sdp(app: &TestApp, token: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let (status, _, body) = post_offer(app, token, path, body.to_owned()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// DELETE on a session's `Location`.
pub async fn delete_session(app: &TestApp, token: &str, location: &str) -> StatusCode {
    delete_at(&app.base, token, location).await
}

async fn delete_at(base: &str, token: &str, location: &str) -> StatusCode {
    super::api()
        .delete(format!("{base}{location}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the DELETE is sent")
        .status()
}

/// A refused offer: its status and JSON error body.
pub type Refusal = (StatusCode, Value);

/// One peer connection on its own socket.
struct Conn {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
}

impl Conn {
    async fn new(pc: RTCPeerConnection) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("a peer binds its UDP socket");
        // A new player is sent the kept keyframe and what followed at once (up to 256 packets):
        // more than the default ~200 KB buffer holds while a debug build reads it.
        socket2::SockRef::from(&socket)
            .set_recv_buffer_size(RECEIVE_BUFFER)
            .expect("a larger receive buffer");
        let local = socket.local_addr().expect("a bound socket has an address");
        Self { pc, socket, local }
    }

    /// The offer, with our socket as the one host candidate (no trickle, like the server).
    fn offer(&mut self) -> String {
        let host = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.local.ip().to_string(),
                port: self.local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("a host candidate from a bound address");
        let candidate = RTCIceCandidate::from(&host)
            .to_json()
            .expect("a host candidate serialises");
        self.pc
            .add_local_candidate(candidate)
            .expect("the connection takes its own candidate");
        let offer = self.pc.create_offer(None).expect("an offer");
        self.pc
            .set_local_description(Instant::now(), offer)
            .expect("our own offer applies");
        self.pc
            .local_description()
            .expect("the offer was just set")
            .sdp
    }

    /// Offers to `path` and applies the answer; the session's `Location`.
    async fn negotiate(
        &mut self,
        app: &TestApp,
        token: &str,
        path: &str,
    ) -> Result<String, Refusal> {
        let offer = self.offer();
        let (status, location, body) = post_offer(app, token, path, offer).await;
        if status != StatusCode::CREATED {
            return Err((status, serde_json::from_str(&body).unwrap_or(Value::Null)));
        }
        let answer = RTCSessionDescription::answer(body).expect("the 201 body is an SDP answer");
        self.pc
            .set_remote_description(Instant::now(), answer)
            .expect("the server's answer applies");
        Ok(location.expect("a 201 has a Location"))
    }

    fn feed(&mut self, from: SocketAddr, data: &[u8]) {
        // What the connection rejects (a datagram after close, a failed check) is its business.
        let _ = self.pc.handle_read(TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
    }

    /// When to wake up at the latest: the connection's next timer, or `other`.
    fn wake_at(&mut self, other: Instant) -> tokio::time::Instant {
        let at = self.pc.poll_timeout().map_or(other, |t| t.min(other));
        tokio::time::Instant::from_std(at)
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            // A timer error (e.g. after close) leaves nothing to do.
            let _ = self.pc.handle_timeout(now);
        }
    }

    async fn flush(&mut self) {
        while let Some(out) = self.pc.poll_write() {
            // Loss on loopback is for the connection to handle, as on a real network.
            let _ = self
                .socket
                .send_to(&out.message, out.transport.peer_addr)
                .await;
        }
    }
}

fn video_feedback() -> Vec<RTCPFeedback> {
    [
        ("nack", ""),
        ("nack", "pli"),
        ("ccm", "fir"),
        ("goog-remb", ""),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    })
    .collect()
}

/// Marks inbound RTCP holding a PLI or FIR for the application; the chain's terminus drops any
/// other inbound RTCP. Passes everything through, emits nothing.
#[derive(Default)]
struct DeliverKeyframeRequests {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverKeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && packets.iter().any(|p| {
                p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()
            })
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for DeliverKeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// The video codec a publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
}

impl VideoCodec {
    fn parameters(self) -> RTCRtpCodecParameters {
        let (mime_type, fmtp, payload_type) = match self {
            Self::Vp8 => (MIME_TYPE_VP8, "", 96),
            Self::H264 => (
                MIME_TYPE_H264,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                102,
            ),
        };
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime_type.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: fmtp.to_owned(),
                rtcp_feedback: video_feedback(),
            },
            payload_type,
        }
    }
}

fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
    }
}

/// What a publisher sends.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub audio: bool,
    pub video: bool,
    pub codec: VideoCodec,
    /// `None`: one video layer. `Some(rids)`: one layer per rid, lowest quality first, each
    /// with its own SSRC and the rid header extension; layer `i`'s body bytes are all `i`.
    pub simulcast: Option<Vec<&'static str>>,
    /// A keyframe every this many frames (besides the first one and those asked for).
    pub keyframe_interval: u64,
    /// Packets per video frame (a keyframe has 2 more with H.264: SPS and PPS).
    pub packets_per_frame: usize,
    /// Packets per frame of each simulcast layer, lowest first, instead of
    /// `packets_per_frame` (e.g. `[1, 3, 6]` for clearly different bitrates).
    pub layer_packets: Option<Vec<usize>>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            codec: VideoCodec::Vp8,
            simulcast: None,
            keyframe_interval: 60,
            packets_per_frame: 3,
            layer_packets: None,
        }
    }
}

/// One video layer as the publisher saw it.
#[derive(Debug, Clone, Default)]
pub struct LayerState {
    pub rid: Option<String>,
    pub ssrc: u32,
    pub frames: u64,
    pub keyframes: u64,
    pub packets: u64,
    /// When each PLI for this layer's SSRC arrived.
    pub plis: Vec<Instant>,
    pub firs: u64,
}

/// What a publisher has done and received.
#[derive(Debug, Clone, Default)]
pub struct PublisherState {
    pub connected_at: Option<Instant>,
    pub connection: RTCPeerConnectionState,
    pub layers: Vec<LayerState>,
    pub audio_packets: u64,
}

impl PublisherState {
    /// PLIs received for every layer, in order of arrival.
    pub fn plis(&self) -> Vec<Instant> {
        let mut all: Vec<Instant> = self.layers.iter().flat_map(|l| l.plis.clone()).collect();
        all.sort();
        all
    }
}

struct Layer {
    rid: Option<Bytes>,
    ssrc: u32,
    seq: u16,
    /// Packets per frame.
    packets: usize,
    want_keyframe: bool,
}

struct VideoOut {
    sender: RTCRtpSenderId,
    codec: VideoCodec,
    payload_type: u8,
    /// Negotiated ids of the mid and rid header extensions and our mid (simulcast only).
    simulcast_ids: Option<(u8, u8, Bytes)>,
    layers: Vec<Layer>,
    frames: u64,
    timestamp_base: u32,
    keyframe_interval: u64,
}

struct AudioOut {
    sender: RTCRtpSenderId,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    packets: u64,
    timestamp_base: u32,
}

fn random_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// The one payload type negotiated on a sender (each publisher registers one codec per kind).
fn sender_payload_type(pc: &mut RTCPeerConnection, sender: RTCRtpSenderId) -> u8 {
    pc.rtp_sender(sender)
        .expect("a sender we added")
        .get_parameters()
        .rtp_parameters
        .codecs
        .first()
        .expect("the server accepted our codec")
        .payload_type
}

/// A WHIP publisher sending synthetic media until stopped or dropped.
pub struct Publisher {
    pub location: String,
    token: String,
    base: String,
    state: Arc<Mutex<PublisherState>>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Publishes to `room` as `token`; panics when the server refuses.
    pub async fn whip(app: &TestApp, token: &str, room: i64, options: PublishOptions) -> Self {
        match Self::try_whip(app, token, room, options).await {
            Ok(publisher) => publisher,
            Err((status, body)) => panic!("WHIP to room {room} refused: {status} {body}"),
        }
    }

    pub async fn try_whip(
        app: &TestApp,
        token: &str,
        room: i64,
        options: PublishOptions,
    ) -> Result<Self, Refusal> {
        let mut engine = MediaEngine::default();
        if options.video {
            engine
                .register_codec(options.codec.parameters(), RtpCodecKind::Video)
                .expect("a video codec registers");
        }
        if options.audio {
            engine
                .register_codec(opus(), RtpCodecKind::Audio)
                .expect("Opus registers");
        }
        // NACK responder (the server asks for lost packets), the simulcast header
        // extensions, RTCP reports; and keyframe requests let through to us.
        let registry = register_default_interceptors(Registry::new(), &mut engine)
            .expect("the default interceptors register")
            .with(Slot::from(12_500), DeliverKeyframeRequests::default());
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .expect("a publisher connection");
        let mut conn = Conn::new(pc).await;

        let rids: Vec<Option<&str>> = match &options.simulcast {
            Some(rids) => rids.iter().map(|r| Some(*r)).collect(),
            None => vec![None],
        };
        let layers: Vec<Layer> = rids
            .iter()
            .enumerate()
            .map(|(i, rid)| Layer {
                rid: rid.map(|r| Bytes::from(r.to_owned())),
                ssrc: random_u32(),
                seq: random_u32() as u16,
                packets: options
                    .layer_packets
                    .as_ref()
                    .and_then(|p| p.get(i).copied())
                    .unwrap_or(options.packets_per_frame)
                    .max(1),
                want_keyframe: true,
            })
            .collect();
        let video_sender = options.video.then(|| {
            let encodings = rids
                .iter()
                .zip(&layers)
                .map(|(rid, layer)| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: rid.unwrap_or_default().to_owned(),
                        ssrc: Some(layer.ssrc),
                        ..Default::default()
                    },
                    codec: options.codec.parameters().rtp_codec,
                    ..Default::default()
                })
                .collect();
            let track = MediaStreamTrack::new(
                "test-publisher".to_owned(),
                "video".to_owned(),
                "video".to_owned(),
                RtpCodecKind::Video,
                encodings,
            );
            conn.pc.add_track(track).expect("the video track adds")
        });
        let audio_ssrc = random_u32();
        let audio_sender = options.audio.then(|| {
            let track = MediaStreamTrack::new(
                "test-publisher".to_owned(),
                "audio".to_owned(),
                "audio".to_owned(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(audio_ssrc),
                        ..Default::default()
                    },
                    codec: opus().rtp_codec,
                    ..Default::default()
                }],
            );
            conn.pc.add_track(track).expect("the audio track adds")
        });

        let location = conn.negotiate(app, token, &format!("/whip/{room}")).await?;

        let video = video_sender.map(|sender| {
            let payload_type = sender_payload_type(&mut conn.pc, sender);
            let simulcast_ids = options
                .simulcast
                .is_some()
                .then(|| simulcast_ids(&mut conn.pc, sender));
            VideoOut {
                sender,
                codec: options.codec,
                payload_type,
                simulcast_ids,
                layers,
                frames: 0,
                timestamp_base: random_u32(),
                keyframe_interval: options.keyframe_interval.max(1),
            }
        });
        let audio = audio_sender.map(|sender| AudioOut {
            sender,
            payload_type: sender_payload_type(&mut conn.pc, sender),
            ssrc: audio_ssrc,
            seq: random_u32() as u16,
            packets: 0,
            timestamp_base: random_u32(),
        });
        let state = Arc::new(Mutex::new(PublisherState {
            layers: video
                .iter()
                .flat_map(|v| &v.layers)
                .map(|l| LayerState {
                    rid: l
                        .rid
                        .as_ref()
                        .map(|r| String::from_utf8_lossy(r).into_owned()),
                    ssrc: l.ssrc,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }));
        let task = tokio::spawn(publish(conn, video, audio, state.clone()));
        Ok(Self {
            location,
            token: token.to_owned(),
            base: app.base.clone(),
            state,
            task,
        })
    }

    /// A copy of what the publisher has done so far.
    pub fn state(&self) -> PublisherState {
        self.state.lock().expect("publisher state lock").clone()
    }

    /// Ends the session (DELETE on its Location) and the peer; the DELETE's status.
    pub async fn stop(self) -> StatusCode {
        let status = delete_at(&self.base, &self.token, &self.location).await;
        self.task.abort();
        status
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The negotiated ids of the mid and rid header extensions on `sender`, and its mid.
fn simulcast_ids(pc: &mut RTCPeerConnection, sender: RTCRtpSenderId) -> (u8, u8, Bytes) {
    let extensions = pc
        .rtp_sender(sender)
        .expect("a sender we added")
        .get_parameters()
        .rtp_parameters
        .header_extensions
        .clone();
    let id = |uri: &str| {
        extensions
            .iter()
            .find(|e| e.uri == uri)
            .map(|e| e.id as u8)
            .unwrap_or_else(|| panic!("the server did not negotiate {uri}"))
    };
    let transceivers: Vec<_> = pc.get_transceivers().collect();
    let mid = transceivers
        .into_iter()
        .find_map(|t| {
            let transceiver = pc.rtp_transceiver(t)?;
            (transceiver.sender() == Some(sender))
                .then(|| transceiver.mid().clone())
                .flatten()
        })
        .expect("the video transceiver has a mid after negotiation");
    (id(SDES_MID), id(SDES_RID), Bytes::from(mid))
}

async fn publish(
    mut conn: Conn,
    mut video: Option<VideoOut>,
    mut audio: Option<AudioOut>,
    state: Arc<Mutex<PublisherState>>,
) {
    let mut buf = vec![0u8; 2048];
    let mut started: Option<Instant> = None;
    loop {
        let idle = Instant::now() + Duration::from_millis(50);
        let next_media = started.map_or(idle, |at| {
            let frame = video
                .as_ref()
                .map_or(idle, |v| at + FRAME_INTERVAL * v.frames as u32);
            let sound = audio
                .as_ref()
                .map_or(idle, |a| at + AUDIO_INTERVAL * a.packets as u32);
            frame.min(sound).min(idle)
        });
        let wake = conn.wake_at(next_media);
        tokio::select! {
            got = conn.socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = got {
                    conn.feed(from, &buf[..n]);
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        conn.run_timers();
        let now = Instant::now();
        while let Some(event) = conn.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(connection) = event {
                let mut state = state.lock().expect("publisher state lock");
                state.connection = connection;
                if connection == RTCPeerConnectionState::Connected && started.is_none() {
                    started = Some(now);
                    state.connected_at = Some(now);
                }
            }
        }
        while let Some(message) = conn.pc.poll_read() {
            let arrived = message.now;
            let RTCMessage::RtcpPacket(_, packets) = message.message else {
                continue;
            };
            for packet in &packets {
                let any = packet.as_any();
                let mut wanted = Vec::new();
                if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                    wanted.push((pli.media_ssrc, false));
                }
                if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                    wanted.extend(fir.fir.iter().map(|entry| (entry.ssrc, true)));
                }
                for (ssrc, is_fir) in wanted {
                    if let Some(video) = &mut video {
                        video
                            .layers
                            .iter_mut()
                            .filter(|l| l.ssrc == ssrc)
                            .for_each(|l| l.want_keyframe = true);
                    }
                    let mut state = state.lock().expect("publisher state lock");
                    if let Some(layer) = state.layers.iter_mut().find(|l| l.ssrc == ssrc) {
                        if is_fir {
                            layer.firs += 1;
                        } else {
                            layer.plis.push(arrived);
                        }
                    }
                }
            }
        }
        if let Some(at) = started {
            if let Some(video) = &mut video {
                while at + FRAME_INTERVAL * video.frames as u32 <= now {
                    video.send_frame(&mut conn.pc, now, &state);
                }
            }
            if let Some(audio) = &mut audio {
                while at + AUDIO_INTERVAL * audio.packets as u32 <= now {
                    audio.send_packet(&mut conn.pc, now, &state);
                }
            }
        }
        conn.flush().await;
    }
}

impl AudioOut {
    fn send_packet(
        &mut self,
        pc: &mut RTCPeerConnection,
        now: Instant,
        state: &Mutex<PublisherState>,
    ) {
        self.seq = self.seq.wrapping_add(1);
        let packet = rtp::Packet {
            header: rtp::Header {
                version: 2,
                payload_type: self.payload_type,
                sequence_number: self.seq,
                timestamp: self
                    .timestamp_base
                    .wrapping_add((self.packets * 960) as u32),
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::from_static(&OPUS_SILENCE),
        };
        self.packets += 1;
        if let Some(mut sender) = pc.rtp_sender(self.sender)
            && sender.write_rtp(now, packet).is_ok()
        {
            state.lock().expect("publisher state lock").audio_packets += 1;
        }
    }
}

impl VideoOut {
    /// One frame on every layer.
    fn send_frame(
        &mut self,
        pc: &mut RTCPeerConnection,
        now: Instant,
        state: &Mutex<PublisherState>,
    ) {
        let timestamp = self
            .timestamp_base
            .wrapping_add((self.frames * 3000) as u32);
        let periodic = self.frames.is_multiple_of(self.keyframe_interval);
        let count = self.layers.len();
        for (index, layer) in self.layers.iter_mut().enumerate() {
            let keyframe = layer.want_keyframe || periodic;
            layer.want_keyframe = false;
            // Full size on the top layer, halved per layer below it (the server ranks layers
            // by bitrate).
            let scale = 1 << (count - 1 - index);
            let chunk = CHUNK / scale;
            let payloads = match self.codec {
                VideoCodec::Vp8 => vp8_frame(
                    keyframe,
                    index as u8,
                    self.frames as u16,
                    (layer.packets, chunk),
                    (1280 / scale as u16, 720 / scale as u16),
                ),
                VideoCodec::H264 => h264_frame(keyframe, index as u8, (layer.packets, chunk)),
            };
            let last = payloads.len() - 1;
            let mut sent = 0;
            for (i, payload) in payloads.into_iter().enumerate() {
                layer.seq = layer.seq.wrapping_add(1);
                let mut header = rtp::Header {
                    version: 2,
                    marker: i == last,
                    payload_type: self.payload_type,
                    sequence_number: layer.seq,
                    timestamp,
                    ssrc: layer.ssrc,
                    ..Default::default()
                };
                if let (Some((mid_id, rid_id, mid)), Some(rid)) = (&self.simulcast_ids, &layer.rid)
                {
                    header
                        .set_extension(*mid_id, mid.clone())
                        .expect("a mid fits a one-byte header extension");
                    header
                        .set_extension(*rid_id, rid.clone())
                        .expect("a rid fits a one-byte header extension");
                }
                let packet = rtp::Packet {
                    header,
                    payload: Bytes::from(payload),
                };
                if let Some(mut sender) = pc.rtp_sender(self.sender)
                    && sender.write_rtp(now, packet).is_ok()
                {
                    sent += 1;
                }
            }
            let mut state = state.lock().expect("publisher state lock");
            let seen = &mut state.layers[index];
            seen.frames += 1;
            seen.keyframes += u64::from(keyframe);
            seen.packets += sent;
        }
        self.frames += 1;
    }
}

/// The RTP payloads of one VP8 frame (RFC 7741): a payload descriptor with X, S (first packet)
/// and partition index 0, and a 15-bit picture id; then the frame — a 3-byte frame tag (bit 0:
/// 0 for a keyframe), for a keyframe the start code and size — and a body of `layer` bytes.
fn vp8_frame(
    keyframe: bool,
    layer: u8,
    picture_id: u16,
    (packets, chunk): (usize, usize),
    (width, height): (u16, u16),
) -> Vec<Vec<u8>> {
    let first_partition = 10u32;
    let tag = (first_partition << 5) | (1 << 4) | u32::from(!keyframe);
    let mut frame = tag.to_le_bytes()[..3].to_vec();
    if keyframe {
        frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        frame.extend_from_slice(&width.to_le_bytes());
        frame.extend_from_slice(&height.to_le_bytes());
    }
    frame.resize(chunk * packets, layer);
    let picture_id = picture_id & 0x7fff;
    frame
        .chunks(chunk)
        .enumerate()
        .map(|(i, chunk)| {
            let start = if i == 0 { 0x10 } else { 0x00 };
            let mut payload = vec![
                0x80 | start,
                0x80,
                0x80 | (picture_id >> 8) as u8,
                picture_id as u8,
            ];
            payload.extend_from_slice(chunk);
            payload
        })
        .collect()
}

/// The RTP payloads of one H.264 access unit (RFC 6184, packetization-mode 1): a keyframe is
/// SPS and PPS as single NAL units and then an IDR slice, other frames a non-IDR slice; a slice
/// of more than one packet goes as FU-A fragments. Slice bodies are `layer` bytes.
fn h264_frame(keyframe: bool, layer: u8, (packets, chunk): (usize, usize)) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    if keyframe {
        // Baseline profile (66), constraint flags e0, level 3.1, then the rest of an SPS.
        payloads.push(vec![
            0x67, 0x42, 0xe0, 0x1f, 0x8d, 0x68, 0x05, 0x00, 0x5b, 0xa1,
        ]);
        payloads.push(vec![0x68, 0xce, 0x3c, 0x80]);
    }
    // nal_ref_idc 3 and type 5 (IDR), or nal_ref_idc 2 and type 1 (non-IDR).
    let nal_header: u8 = if keyframe { 0x65 } else { 0x41 };
    let body = vec![layer; chunk * packets];
    if packets == 1 {
        let mut single = vec![nal_header];
        single.extend_from_slice(&body);
        payloads.push(single);
        return payloads;
    }
    let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let indicator = (nal_header & 0xe0) | 28;
        let start = if i == 0 { 0x80 } else { 0 };
        let end = if i + 1 == chunks.len() { 0x40 } else { 0 };
        let mut fragment = vec![indicator, start | end | (nal_header & 0x1f)];
        fragment.extend_from_slice(chunk);
        payloads.push(fragment);
    }
    payloads
}

/// One video packet as a subscriber got it (decrypted).
#[derive(Debug, Clone)]
pub struct VideoPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// The first packet of a keyframe (VP8: S bit, partition 0, key frame tag and start code;
    /// H.264: the SPS, or an IDR slice's first packet when no SPS came before it).
    pub keyframe: bool,
    /// The last payload byte of a VP8 packet or H.264 slice packet: the publisher's layer.
    pub layer: Option<u8>,
    /// H.264: the NAL unit type carried (7 SPS, 8 PPS, 5 IDR, 1 non-IDR; a fragment's for
    /// FU-A, the first unit's for STAP-A). VP8: none.
    pub nal: Option<u8>,
    /// H.264: an FU-A fragment.
    pub fu_a: bool,
    pub at: Instant,
}

/// What a subscriber has received.
#[derive(Debug, Clone, Default)]
pub struct SubscriberState {
    pub connected_at: Option<Instant>,
    pub connection: RTCPeerConnectionState,
    /// The negotiated MIME type of the video received, e.g. `video/VP8`.
    pub video_codec: Option<String>,
    pub video_ssrc: Option<u32>,
    pub audio_packets: u64,
    pub video: Vec<VideoPacket>,
    pub first_video_at: Option<Instant>,
    pub first_keyframe_at: Option<Instant>,
    /// Every RTP datagram that reached the socket, by (SSRC, sequence number): a count above 1
    /// is a copy sent again (which SRTP's replay check then drops).
    pub arrivals: HashMap<(u32, u16), u32>,
    /// Video packets dropped on purpose at the socket ([`Subscriber::lose_next_video`]).
    pub lost: Vec<u16>,
}

impl SubscriberState {
    /// How often the video packet `seq` reached the socket.
    pub fn video_arrivals(&self, seq: u16) -> u32 {
        self.video_ssrc
            .and_then(|ssrc| self.arrivals.get(&(ssrc, seq)).copied())
            .unwrap_or(0)
    }

    /// Whether the video packet `seq` was decrypted and recorded.
    pub fn has_video(&self, seq: u16) -> bool {
        self.video.iter().any(|p| p.seq == seq)
    }

    /// Keyframes that started at or after `since`.
    pub fn keyframes_since(&self, since: Instant) -> usize {
        self.video
            .iter()
            .filter(|p| p.keyframe && p.at >= since)
            .count()
    }
}

enum Command {
    Pli,
    Nack(Vec<u16>),
    Lose(usize),
}

/// A WHEP subscriber recording what it receives until stopped or dropped.
pub struct Subscriber {
    pub location: String,
    token: String,
    base: String,
    state: Arc<Mutex<SubscriberState>>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Plays `room` as `token` (`query`: "" or e.g. "?layer=low"); panics when refused.
    pub async fn whep(app: &TestApp, token: &str, room: i64, query: &str) -> Self {
        match Self::try_whep(app, token, room, query).await {
            Ok(subscriber) => subscriber,
            Err((status, body)) => panic!("WHEP to room {room}{query} refused: {status} {body}"),
        }
    }

    pub async fn try_whep(
        app: &TestApp,
        token: &str,
        room: i64,
        query: &str,
    ) -> Result<Self, Refusal> {
        // Like a browser: every default codec (VP8, VP9, H.264, AV1, Opus, …) with the usual
        // video feedback, RTCP reports, but no NACK generator.
        let mut engine = MediaEngine::default();
        engine
            .register_default_codecs()
            .expect("the default codecs register");
        for feedback in video_feedback() {
            engine.register_feedback(feedback, RtpCodecKind::Video);
        }
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(configure_rtcp_reports(Registry::new()))
            .build(Instant::now())
            .expect("a subscriber connection");
        let mut conn = Conn::new(pc).await;
        let mut video_receiver = None;
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            let transceiver = conn
                .pc
                .add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .expect("a receive-only transceiver adds");
            if kind == RtpCodecKind::Video {
                video_receiver = conn
                    .pc
                    .rtp_transceiver(transceiver)
                    .and_then(|t| t.receiver());
            }
        }
        let video_receiver = video_receiver.expect("a receive-only transceiver has a receiver");
        let location = conn
            .negotiate(app, token, &format!("/whep/{room}{query}"))
            .await?;
        let state = Arc::new(Mutex::new(SubscriberState::default()));
        let (commands, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(play(conn, video_receiver, received, state.clone()));
        Ok(Self {
            location,
            token: token.to_owned(),
            base: app.base.clone(),
            state,
            commands,
            task,
        })
    }

    /// A copy of what the subscriber has received so far.
    pub fn state(&self) -> SubscriberState {
        self.state.lock().expect("subscriber state lock").clone()
    }

    /// Asks for a keyframe (PLI on the video SSRC).
    pub fn send_pli(&self) {
        // The task only ends when the subscriber is stopped or dropped.
        let _ = self.commands.send(Command::Pli);
    }

    /// Asks for these video packets again (a NACK on the video SSRC).
    pub fn send_nack(&self, seqs: Vec<u16>) {
        let _ = self.commands.send(Command::Nack(seqs));
    }

    /// Drops the next `n` video datagrams at the socket, as the network would (see `lost`).
    pub fn lose_next_video(&self, n: usize) {
        let _ = self.commands.send(Command::Lose(n));
    }

    /// Ends the session (DELETE on its Location) and the peer; the DELETE's status (404 when
    /// the server had already closed it).
    pub async fn stop(self) -> StatusCode {
        let status = delete_at(&self.base, &self.token, &self.location).await;
        self.task.abort();
        status
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SSRC and sequence number of an RTP (not RTCP, RFC 5761) datagram; in clear under SRTP.
fn rtp_ids(data: &[u8]) -> Option<(u32, u16)> {
    let is_rtp = data.len() > 12 && data[0] & 0xc0 == 0x80 && !(192..=223).contains(&data[1]);
    is_rtp.then(|| {
        (
            u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            u16::from_be_bytes([data[2], data[3]]),
        )
    })
}

async fn play(
    mut conn: Conn,
    video_receiver: RTCRtpReceiverId,
    mut commands: mpsc::UnboundedReceiver<Command>,
    state: Arc<Mutex<SubscriberState>>,
) {
    let mut buf = vec![0u8; 2048];
    let mut kinds: HashMap<String, RtpCodecKind> = HashMap::new();
    let mut h264 = false;
    let mut lose = 0usize;
    // The timestamp of the last keyframe seen (H.264: SPS and IDR start the same one).
    let mut keyframe_timestamp = None;
    loop {
        let wake = conn.wake_at(Instant::now() + Duration::from_millis(50));
        tokio::select! {
            got = conn.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let data = &buf[..n];
                if let Some(ids) = rtp_ids(data) {
                    let mut state = state.lock().expect("subscriber state lock");
                    *state.arrivals.entry(ids).or_default() += 1;
                    if lose > 0 && state.video_ssrc == Some(ids.0) {
                        lose -= 1;
                        state.lost.push(ids.1);
                        continue;
                    }
                }
                conn.feed(from, data);
            }
            command = commands.recv() => {
                let Some(command) = command else { return };
                let media_ssrc = state.lock().expect("subscriber state lock").video_ssrc;
                let feedback: Option<Box<dyn rtc::rtcp::Packet>> = match (command, media_ssrc) {
                    (Command::Lose(n), _) => {
                        lose += n;
                        None
                    }
                    (_, None) => None, // nothing to give feedback on before the first packet
                    (Command::Pli, Some(media_ssrc)) => Some(Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    })),
                    (Command::Nack(seqs), Some(media_ssrc)) => Some(Box::new(TransportLayerNack {
                        sender_ssrc: 0,
                        media_ssrc,
                        nacks: seqs
                            .into_iter()
                            .map(|packet_id| NackPair { packet_id, lost_packets: 0 })
                            .collect(),
                    })),
                };
                if let (Some(packet), Some(mut receiver)) =
                    (feedback, conn.pc.rtp_receiver(video_receiver))
                {
                    // A write that fails (the connection closed) is seen as no answer.
                    let _ = receiver.write_rtcp(Instant::now(), vec![packet]);
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        conn.run_timers();
        while let Some(event) = conn.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(connection) => {
                    let mut state = state.lock().expect("subscriber state lock");
                    state.connection = connection;
                    if connection == RTCPeerConnectionState::Connected {
                        state.connected_at.get_or_insert_with(Instant::now);
                    }
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    if let Some(receiver) = conn.pc.rtp_receiver(init.receiver_id) {
                        kinds.insert(init.track_id, receiver.track().kind());
                    }
                }
                _ => {}
            }
        }
        while let Some(message) = conn.pc.poll_read() {
            let RTCMessage::RtpPacket(track, packet) = message.message else {
                continue;
            };
            let mut state = state.lock().expect("subscriber state lock");
            if kinds.get(&track) != Some(&RtpCodecKind::Video) {
                state.audio_packets += 1;
                continue;
            }
            if state.video_codec.is_none() {
                let codec = conn.pc.rtp_receiver(video_receiver).and_then(|mut r| {
                    r.get_parameters()
                        .rtp_parameters
                        .codecs
                        .iter()
                        .find(|c| c.payload_type == packet.header.payload_type)
                        .map(|c| c.rtp_codec.mime_type.clone())
                });
                h264 = codec
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(MIME_TYPE_H264));
                state.video_codec = codec;
                state.video_ssrc = Some(packet.header.ssrc);
            }
            let payload = &packet.payload[..];
            let (starts_keyframe, layer, nal, fu_a) = if h264 {
                inspect_h264(payload)
            } else {
                (
                    vp8_keyframe_start(payload),
                    payload.last().copied(),
                    None,
                    false,
                )
            };
            let timestamp = packet.header.timestamp;
            let keyframe = starts_keyframe && keyframe_timestamp != Some(timestamp);
            if keyframe {
                keyframe_timestamp = Some(timestamp);
            }
            let at = message.now;
            state.first_video_at.get_or_insert(at);
            if keyframe {
                state.first_keyframe_at.get_or_insert(at);
            }
            state.video.push(VideoPacket {
                seq: packet.header.sequence_number,
                timestamp,
                marker: packet.header.marker,
                keyframe,
                layer,
                nal,
                fu_a,
                at,
            });
        }
        conn.flush().await;
    }
}

/// Whether a VP8 payload starts a keyframe: S bit and partition 0 in the descriptor, then a
/// frame tag with bit 0 clear and the keyframe start code.
fn vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let mut header = 1;
    if first & 0x80 != 0 {
        let Some(&extension) = payload.get(1) else {
            return false;
        };
        header = 2;
        if extension & 0x80 != 0 {
            // Picture id: 15 bits when M is set, else 7.
            let long = payload.get(2).is_some_and(|b| b & 0x80 != 0);
            header += if long { 2 } else { 1 };
        }
        header += usize::from(extension & 0x40 != 0); // TL0PICIDX
        header += usize::from(extension & 0x30 != 0); // TID / KEYIDX
    }
    let partition_start = first & 0x10 != 0 && first & 0x07 == 0;
    partition_start
        && payload.get(header).is_some_and(|tag| tag & 0x01 == 0)
        && payload.get(header + 3..header + 6) == Some(&[0x9d, 0x01, 0x2a][..])
}

/// An H.264 payload: whether it may start a keyframe (SPS, or an IDR slice's start), the
/// layer byte of a slice packet, the NAL unit type carried, whether it is an FU-A fragment.
fn inspect_h264(payload: &[u8]) -> (bool, Option<u8>, Option<u8>, bool) {
    let Some(&first) = payload.first() else {
        return (false, None, None, false);
    };
    let fu_a = first & 0x1f == 28;
    let (nal, start) = match first & 0x1f {
        // STAP-A: the first aggregated unit's type, after a 2-byte size.
        24 => (payload.get(3).map_or(0, |b| b & 0x1f), true),
        // FU-A: the fragment header's type; S bit on the first fragment.
        28 => payload
            .get(1)
            .map_or((0, false), |b| (b & 0x1f, b & 0x80 != 0)),
        other => (other, true),
    };
    let keyframe = start && (nal == 7 || nal == 5);
    let layer = matches!(nal, 1 | 5)
        .then(|| payload.last().copied())
        .flatten();
    (keyframe, layer, Some(nal), fu_a)
}
