//! SFU fan-out benchmark: one publisher sends a synthetic 720p-sized stream (about 1.5 Mbit/s of
//! video in 30 frames a second, plus Opus-sized audio) by WHIP; N subscribers play it by WHEP.
//!
//! Every client is a real WebRTC peer (the `rtc` crate: ICE, DTLS, SRTP), but a subscriber stops
//! feeding its connection once it is connected and only counts the SRTP packets that arrive, so
//! it costs the generator a `recv` per packet, far less than the SFU's work per packet (RTP
//! rewrite, NACK buffer, SRTP encryption, `send`). The SFU is not told: it sees ordinary players.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngine;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::proc_stats;

#[derive(Debug, Clone, clap::Args)]
pub struct SfuArgs {
    /// Server base URL.
    #[arg(long)]
    base: String,
    /// The server's process id (CPU time).
    #[arg(long)]
    server_pid: u32,
    /// The demo password.
    #[arg(long)]
    password: String,
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Measured seconds, after every subscriber is connected and a warm-up second.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 1500)]
    video_kbps: u64,
}

type Res<T> = anyhow::Result<T>;

pub(crate) fn rtc_err(e: rtc::shared::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub(crate) fn new_pc() -> Res<RTCPeerConnection> {
    new_pc_with(None)
}

/// A connection with the default codecs and interceptors, and `settings` if given.
pub(crate) fn new_pc_with(settings: Option<SettingEngine>) -> Res<RTCPeerConnection> {
    let mut engine = MediaEngine::default();
    engine.register_default_codecs().map_err(rtc_err)?;
    let registry = register_default_interceptors(Registry::new(), &mut engine).map_err(rtc_err)?;
    let mut builder =
        RTCPeerConnectionBuilder::new().with_configuration(RTCConfigurationBuilder::new().build());
    if let Some(settings) = settings {
        builder = builder.with_setting_engine(settings);
    }
    builder
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(rtc_err)
}

/// A player's own socket and a connection ready to offer receive-only video and audio.
async fn new_player() -> Res<(Arc<UdpSocket>, SocketAddr, RTCPeerConnection)> {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let local = socket.local_addr()?;
    let mut pc = new_pc()?;
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .map_err(rtc_err)?;
    }
    Ok((socket, local, pc))
}

/// Hands the connection its one local candidate: the UDP host candidate of its own socket.
pub(crate) fn add_host_candidate(pc: &mut RTCPeerConnection, local: SocketAddr) -> Res<()> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(rtc_err)?;
    pc.add_local_candidate(RTCIceCandidate::from(&host).to_json().map_err(rtc_err)?)
        .map_err(rtc_err)
}

/// Offers, posts the offer to `path`, applies the answer.
async fn negotiate(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    pc: &mut RTCPeerConnection,
    local: SocketAddr,
) -> Res<String> {
    add_host_candidate(pc, local)?;
    let offer = pc.create_offer(None).map_err(rtc_err)?;
    pc.set_local_description(Instant::now(), offer)
        .map_err(rtc_err)?;
    let sdp = pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| anyhow::anyhow!("no offer"))?;
    let response = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(sdp)
        .send()
        .await?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let answer = response.text().await?;
    anyhow::ensure!(status.as_u16() == 201, "POST {path}: {status} {answer}");
    pc.set_remote_description(
        Instant::now(),
        RTCSessionDescription::answer(answer).map_err(rtc_err)?,
    )
    .map_err(rtc_err)?;
    Ok(location)
}

/// Drives one peer connection's handshake over `socket`; with `count`, stops feeding media
/// once connected and counts RTP datagrams instead.
pub(crate) struct Driver {
    pc: RTCPeerConnection,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    connected: bool,
}

impl Driver {
    pub(crate) fn new(pc: RTCPeerConnection, socket: Arc<UdpSocket>, local: SocketAddr) -> Self {
        Self {
            pc,
            socket,
            local,
            connected: false,
        }
    }

    async fn flush(&mut self) {
        self.flush_with(|_| {}).await;
    }

    /// Sends what the connection has to send, follows its state, and hands `read` what it
    /// decrypted.
    async fn flush_with(&mut self, mut read: impl FnMut(TaggedRTCMessage)) {
        while let Some(out) = self.pc.poll_write() {
            let _ = self
                .socket
                .send_to(&out.message, out.transport.peer_addr)
                .await;
        }
        while let Some(event) = self.pc.poll_event() {
            if let rtc::peer_connection::event::RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                state,
            ) = event
            {
                self.connected = state == RTCPeerConnectionState::Connected;
            }
        }
        while let Some(message) = self.pc.poll_read() {
            read(message);
        }
    }

    fn feed(&mut self, from: SocketAddr, data: &[u8]) {
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

    fn timeout(&mut self) -> Duration {
        let now = Instant::now();
        match self.pc.poll_timeout() {
            Some(at) if at <= now => {
                let _ = self.pc.handle_timeout(now);
                Duration::ZERO
            }
            Some(at) => (at - now).min(Duration::from_millis(100)),
            None => Duration::from_millis(100),
        }
    }
}

/// The measured window, exact to the packet: the publisher numbers its packets (RTP sequence
/// numbers, which the SFU forwards unchanged and SRTP leaves in clear), counts what it sends
/// from `lo` on, and stops sending at the end; subscribers count what arrives from `lo` on.
pub(crate) struct Window {
    start: AtomicBool,
    started: AtomicBool,
    end: AtomicBool,
    /// Per track (video, audio): the first sequence number in the window.
    lo: [AtomicU32; 2],
    /// Per track: packets sent in the window.
    sent: [AtomicU64; 2],
    /// The generator's clock for the latency: sends and arrivals in µs since this.
    epoch: Instant,
    /// When each video sequence number was handed to the socket (µs since `epoch`).
    sent_at: Vec<AtomicU64>,
    /// Publisher → SFU → subscriber latency of the window's video packets, in 50 µs steps
    /// up to 1 s (the last bucket holds the rest).
    latency: Vec<AtomicU64>,
}

/// Latency histogram: buckets of this many µs.
const LATENCY_STEP_US: u64 = 50;
const LATENCY_BUCKETS: usize = 20_000;

impl Default for Window {
    fn default() -> Self {
        Self {
            start: AtomicBool::default(),
            started: AtomicBool::default(),
            end: AtomicBool::default(),
            lo: Default::default(),
            sent: Default::default(),
            epoch: Instant::now(),
            sent_at: (0..=usize::from(u16::MAX))
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Window {
    /// A video packet of the window, numbered `seq` by the publisher, arrived now.
    fn arrived(&self, seq: u16) {
        let sent = self.sent_at[usize::from(seq)].load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_micros() as u64;
        if sent > 0 && now >= sent {
            let bucket = ((now - sent) / LATENCY_STEP_US) as usize;
            self.latency[bucket.min(LATENCY_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The latency quantiles of the window's video, in ms (upper bucket bounds).
    fn latency_ms(&self, quantiles: &[f64]) -> Vec<f64> {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        quantiles
            .iter()
            .map(|q| {
                if total == 0 {
                    return 0.0;
                }
                let rank = ((total as f64 * q).ceil() as u64).max(1);
                let mut seen = 0;
                for (i, count) in counts.iter().enumerate() {
                    seen += count;
                    if seen >= rank {
                        return ((i as u64 + 1) * LATENCY_STEP_US) as f64 / 1000.0;
                    }
                }
                (LATENCY_BUCKETS as u64 * LATENCY_STEP_US) as f64 / 1000.0
            })
            .collect()
    }

    /// Whether a received RTP packet of `track`, numbered `seq` by the publisher, was sent
    /// inside the window.
    fn counts(&self, track: usize, seq: u16) -> bool {
        if !self.started.load(Ordering::Acquire) {
            return false;
        }
        let lo = self.lo[track].load(Ordering::Relaxed) as u16;
        seq.wrapping_sub(lo) < 32_768
    }

    /// At the publisher, once the run asked for the window to start: its first sequence
    /// numbers are the next ones, `next` per track.
    pub(crate) fn open(&self, next: [u16; 2]) {
        if self.start.load(Ordering::Relaxed) && !self.started.load(Ordering::Relaxed) {
            for (i, next) in next.iter().enumerate() {
                self.lo[i].store(u32::from(*next), Ordering::Relaxed);
            }
            self.started.store(true, Ordering::Release);
        }
    }

    /// At the publisher: whether the window is over (then it stops sending).
    pub(crate) fn ended(&self) -> bool {
        self.end.load(Ordering::Relaxed)
    }

    /// At the publisher: one more packet of `track`, numbered `seq`, sent.
    pub(crate) fn sent_one(&self, track: usize, seq: u16) {
        if self.started.load(Ordering::Relaxed) {
            self.sent[track].fetch_add(1, Ordering::Relaxed);
        }
        if track == 0 {
            let now = (self.epoch.elapsed().as_micros() as u64).max(1);
            self.sent_at[usize::from(seq)].store(now, Ordering::Relaxed);
        }
    }
}

/// The track of an RTP packet, from its size: 0 for video (~1,100 bytes), 1 for audio (~150).
fn track_of(len: usize) -> usize {
    usize::from(len < 600)
}

/// How the server numbers what it forwards, per track (video, audio): the publisher's sequence
/// number is the received one minus this offset. livecamp forwards sequence numbers unchanged;
/// Janus renumbers each viewer's stream from 1, so a Janus subscriber learns the offset from the
/// first packet of each track, which it decrypts: the payload carries the publisher's number
/// in its bytes 1–2 ([`Synthetic`] with `stamp`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renumbering([Option<u16>; 2]);

impl Renumbering {
    /// Sequence numbers forwarded unchanged.
    pub(crate) const NONE: Self = Self([Some(0), Some(0)]);
    /// Sequence numbers renumbered by an unknown offset per track.
    pub(crate) const UNKNOWN: Self = Self([None, None]);

    fn known(&self) -> bool {
        self.0.iter().all(Option::is_some)
    }

    /// The publisher's sequence number of a received RTP datagram, if its offset is known.
    fn publisher_seq(&self, data: &[u8]) -> Option<u16> {
        let offset = self.0[track_of(data.len())]?;
        Some(u16::from_be_bytes([data[2], data[3]]).wrapping_sub(offset))
    }

    /// Learns a track's offset from a decrypted packet.
    fn learn(&mut self, message: &TaggedRTCMessage) {
        if let RTCMessage::RtpPacket(_, packet) = &message.message
            && let [_, hi, lo, ..] = packet.payload[..]
        {
            let track = track_of(packet.payload.len());
            if self.0[track].is_none() {
                let sent = u16::from_be_bytes([hi, lo]);
                self.0[track] = Some(packet.header.sequence_number.wrapping_sub(sent));
            }
        }
    }
}

/// RTP (not RTCP) by RFC 7983 / 5761: first byte 128–191, payload type outside 64–95.
pub(crate) fn is_rtp(data: &[u8]) -> bool {
    data.len() > 12 && (128..=191).contains(&data[0]) && !(192..=223).contains(&data[1])
}

/// The synthetic stream's schedule: 30 video frames a second, each of ~1,100-byte packets
/// (`video_kbps` in all), and an Opus-sized packet every 20 ms; per track (0 video, 1 audio),
/// RTP sequence numbers from 1 and timestamps from the frame count.
pub(crate) struct Synthetic {
    started: Instant,
    /// Per track: frames (audio packets) sent so far.
    due: [u64; 2],
    /// Per track: the last sequence number used.
    seq: [u16; 2],
    packets_per_frame: usize,
    filler: Bytes,
    /// Whether each payload carries its sequence number in bytes 1–2 (see [`Renumbering`]).
    stamp: bool,
}

/// One packet of the synthetic stream.
pub(crate) struct SyntheticPacket {
    pub(crate) track: usize,
    pub(crate) seq: u16,
    pub(crate) timestamp: u32,
    pub(crate) marker: bool,
    pub(crate) payload: Bytes,
}

impl Synthetic {
    /// Starts the clock now.
    pub(crate) fn new(video_kbps: u64, stamp: bool) -> Self {
        let per_frame_bytes = (video_kbps * 1000 / 8 / 30) as usize;
        Self {
            started: Instant::now(),
            due: [0; 2],
            seq: [0; 2],
            packets_per_frame: per_frame_bytes.div_ceil(1100).max(1),
            filler: Bytes::from(vec![0x5au8; 1100]),
            stamp,
        }
    }

    /// Per track, the sequence number of the next packet.
    pub(crate) fn next_seq(&self) -> [u16; 2] {
        self.seq.map(|s| s.wrapping_add(1))
    }

    /// The packets due since the last call, video first.
    pub(crate) fn due(&mut self) -> Vec<SyntheticPacket> {
        let elapsed = self.started.elapsed().as_millis() as u64;
        let mut packets = Vec::new();
        for track in 0..2 {
            let (count, clock, rate, n, size) = if track == 0 {
                (
                    elapsed * 30 / 1000,
                    90_000u64,
                    30,
                    self.packets_per_frame,
                    1100,
                )
            } else {
                (elapsed / 20, 48_000u64, 50, 1, 120)
            };
            while self.due[track] < count {
                self.due[track] += 1;
                let timestamp = (self.due[track] * clock / rate) as u32;
                for p in 0..n {
                    self.seq[track] = self.seq[track].wrapping_add(1);
                    let mut payload = BytesMut::new();
                    // VP8 payload descriptor: S bit on the first packet of a frame.
                    payload.extend_from_slice(&[if p == 0 { 0x10 } else { 0x00 }]);
                    payload.extend_from_slice(&self.filler[..size]);
                    if self.stamp {
                        payload[1..3].copy_from_slice(&self.seq[track].to_be_bytes());
                    }
                    packets.push(SyntheticPacket {
                        track,
                        seq: self.seq[track],
                        timestamp,
                        marker: p + 1 == n,
                        payload: payload.freeze(),
                    });
                }
            }
        }
        packets
    }
}

/// The publisher: connects by WHIP and sends the synthetic stream until `stop`; packets sent
/// inside the window are counted there.
pub(crate) struct Publishing {
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) window: Arc<Window>,
}

async fn start_publisher(
    http: &reqwest::Client,
    base: &str,
    host: &str,
    room: i64,
    video_kbps: u64,
) -> Res<Publishing> {
    // The publisher.
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let local = socket.local_addr()?;
    let mut pc = new_pc()?;
    let mut senders: Vec<(RtpCodecKind, RTCRtpSenderId, u32)> = Vec::new();
    for (kind, mime, clock_rate, channels, fmtp) in [
        (RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0, ""),
        (
            RtpCodecKind::Audio,
            MIME_TYPE_OPUS,
            48_000,
            2,
            "minptime=10;useinbandfec=1",
        ),
    ] {
        let ssrc = rand::random::<u32>();
        let codec = RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        };
        let track = MediaStreamTrack::new(
            "bench".to_owned(),
            format!("bench-{mime}"),
            format!("bench-{mime}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        senders.push((kind, pc.add_track(track).map_err(rtc_err)?, ssrc));
    }
    negotiate(http, base, &format!("/whip/{room}"), host, &mut pc, local).await?;
    let mut payload_types = Vec::new();
    for (kind, sender, ssrc) in &senders {
        let mut handle = pc
            .rtp_sender(*sender)
            .ok_or_else(|| anyhow::anyhow!("no sender"))?;
        let pt = handle
            .get_parameters()
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
            .ok_or_else(|| anyhow::anyhow!("no negotiated codec"))?;
        payload_types.push((*kind, *sender, *ssrc, pt));
    }
    let mut publisher = Driver {
        pc,
        socket: socket.clone(),
        local,
        connected: false,
    };
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new(Window::default());
    let publishing = {
        let (sent, stop, window) = (sent.clone(), stop.clone(), window.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut stream = Synthetic::new(video_kbps, false);
            while !stop.load(Ordering::Relaxed) {
                let wait = publisher.timeout();
                tokio::select! {
                    received = publisher.socket.recv_from(&mut buf) => {
                        if let Ok((n, from)) = received {
                            publisher.feed(from, &buf[..n]);
                        }
                    }
                    _ = tokio::time::sleep(wait.min(Duration::from_millis(5))) => {}
                }
                window.open(stream.next_seq());
                let sending = !window.ended();
                if publisher.connected && sending {
                    let now = Instant::now();
                    for packet in stream.due() {
                        let (_, sender, ssrc, pt) = payload_types[packet.track];
                        let (packet_track, packet_seq) = (packet.track, packet.seq);
                        let packet = rtc::rtp::Packet {
                            header: rtc::rtp::Header {
                                version: 2,
                                marker: packet.marker,
                                payload_type: pt,
                                sequence_number: packet.seq,
                                timestamp: packet.timestamp,
                                ssrc,
                                ..Default::default()
                            },
                            payload: packet.payload,
                        };
                        if let Some(mut s) = publisher.pc.rtp_sender(sender)
                            && s.write_rtp(now, packet).is_ok()
                        {
                            sent.fetch_add(1, Ordering::Relaxed);
                            window.sent_one(packet_track, packet_seq);
                        }
                    }
                }
                publisher.flush().await;
            }
        })
    };
    // Wait for the publisher's tracks to open at the SFU.
    let ready = Instant::now();
    while sent.load(Ordering::Relaxed) < 100 {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(10),
            "the publisher did not connect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    Ok(Publishing {
        task: publishing,
        stop,
        window,
    })
}

pub async fn sfu(args: SfuArgs) -> Res<()> {
    let http = reqwest::Client::new();
    let base = args.base.trim_end_matches('/').to_owned();
    let target = crate::hub::Target {
        base: base.clone(),
        flavor: crate::hub::Flavor::Livecamp,
        server_pid: args.server_pid,
        password: args.password.clone(),
        connect_concurrency: 32,
    };
    let (host, viewers, room) = crate::hub::prepare(&target).await?;

    let publishing = start_publisher(&http, &base, &host, room, args.video_kbps).await?;

    // The subscribers.
    let tally = Tally::new(&publishing);
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    let join_started = Instant::now();
    for i in 0..args.subscribers {
        let (http, base, token) = (
            http.clone(),
            base.clone(),
            viewers[i % viewers.len()].clone(),
        );
        let (tally, gate) = (tally.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let (socket, local, mut pc) = new_player().await?;
            let offered = Instant::now();
            {
                let _permit = gate.acquire().await?;
                negotiate(
                    &http,
                    &base,
                    &format!("/whep/{room}"),
                    &token,
                    &mut pc,
                    local,
                )
                .await?;
            }
            count(
                Driver::new(pc, socket, local),
                &tally,
                offered,
                Renumbering::NONE,
            )
            .await;
            anyhow::Ok(())
        }));
    }
    let result = measure(Measure {
        benchmark: "sfu-fanout",
        subscribers: args.subscribers,
        duration: args.duration,
        video_kbps: args.video_kbps,
        server_pid: args.server_pid,
        join_started,
        publishing,
        tasks,
        tally,
    })
    .await?;
    println!("{result}");
    Ok(())
}

/// What the subscribers count, together.
#[derive(Clone)]
pub(crate) struct Tally {
    /// Packets of the window received, all subscribers.
    received: Arc<AtomicU64>,
    /// Subscribers connected (and counting).
    connected: Arc<AtomicU64>,
    /// Offer → connected, per subscriber, in ms.
    join_times: Arc<std::sync::Mutex<Vec<u64>>>,
    window: Arc<Window>,
    stop: Arc<AtomicBool>,
}

impl Tally {
    pub(crate) fn new(publishing: &Publishing) -> Self {
        Self {
            received: Arc::new(AtomicU64::new(0)),
            connected: Arc::new(AtomicU64::new(0)),
            join_times: Arc::new(std::sync::Mutex::new(Vec::new())),
            window: publishing.window.clone(),
            stop: publishing.stop.clone(),
        }
    }
}

/// A subscriber, once its connection is negotiated, until the run stops: drives the handshake,
/// then counts the RTP datagrams sent inside the window without decrypting them (see
/// [`Renumbering`] for the few it decrypts first against a server that renumbers).
pub(crate) async fn count(
    mut driver: Driver,
    tally: &Tally,
    offered: Instant,
    mut renumbering: Renumbering,
) {
    let mut buf = vec![0u8; 2048];
    let mut counted = false;
    while !tally.stop.load(Ordering::Relaxed) {
        let wait = driver.timeout();
        tokio::select! {
            got = driver.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let data = &buf[..n];
                if driver.connected && is_rtp(data)
                    && let Some(seq) = renumbering.publisher_seq(data)
                {
                    let track = track_of(n);
                    if tally.window.counts(track, seq) {
                        tally.received.fetch_add(1, Ordering::Relaxed);
                        if track == 0 {
                            tally.window.arrived(seq);
                        }
                    }
                    continue;
                }
                driver.feed(from, data);
            }
            _ = tokio::time::sleep(wait) => {}
        }
        driver
            .flush_with(|message| renumbering.learn(&message))
            .await;
        if driver.connected && renumbering.known() && !counted {
            counted = true;
            tally.connected.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut times) = tally.join_times.lock() {
                times.push(offered.elapsed().as_millis() as u64);
            }
        }
    }
}

/// A fan-out run, its subscribers started.
pub(crate) struct Measure {
    pub(crate) benchmark: &'static str,
    /// Subscribers requested.
    pub(crate) subscribers: usize,
    /// Measured seconds.
    pub(crate) duration: u64,
    pub(crate) video_kbps: u64,
    pub(crate) server_pid: u32,
    pub(crate) join_started: Instant,
    pub(crate) publishing: Publishing,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<Res<()>>>,
    pub(crate) tally: Tally,
}

/// Waits (up to 60 s) for the subscribers to connect, then a second, measures the window,
/// stops the publisher and the subscribers: the result line.
pub(crate) async fn measure(run: Measure) -> Res<serde_json::Value> {
    let Measure {
        benchmark,
        subscribers: requested,
        duration,
        video_kbps,
        server_pid,
        join_started,
        publishing,
        tasks,
        tally,
    } = run;
    let (stop, window) = (&tally.stop, &tally.window);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (tally.connected.load(Ordering::Relaxed) as usize) < requested
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let join_seconds = join_started.elapsed().as_secs_f64();
    let subscribers = tally.connected.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cpu_start = proc_stats::cpu_seconds(server_pid)?;
    let window_started = Instant::now();
    window.start.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(duration)).await;
    window.end.store(true, Ordering::Relaxed);
    let wall = window_started.elapsed().as_secs_f64();
    // What was sent last is still on its way (and may be retransmitted): wait for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = proc_stats::cpu_seconds(server_pid)? - cpu_start;
    let sent_in_window: u64 = window.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    let rss = proc_stats::rss_bytes(server_pid)?;
    stop.store(true, Ordering::Relaxed);
    let _ = publishing.task.await;
    for task in tasks {
        let _ = task.await;
    }
    let received = tally.received.load(Ordering::Relaxed);
    let expected = sent_in_window * subscribers;
    let mut times = tally
        .join_times
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default();
    times.sort_unstable();
    let latency = window.latency_ms(&[0.5, 0.99, 0.999]);
    let quantile = |q: f64| -> u64 {
        if times.is_empty() {
            return 0;
        }
        times[((times.len() - 1) as f64 * q).round() as usize]
    };
    Ok(json!({
        "benchmark": benchmark,
        "subscribers_requested": requested,
        "subscribers": subscribers,
        "join_seconds": join_seconds,
        "connect_p50_ms": quantile(0.5),
        "connect_p99_ms": quantile(0.99),
        "connect_max_ms": quantile(1.0),
        "video_kbps": video_kbps,
        "window_seconds": wall,
        "published_packets": sent_in_window,
        "forwarded_packets": received,
        "expected_packets": expected,
        "loss": if expected > 0 { 1.0 - received as f64 / expected as f64 } else { 0.0 },
        "server_cpu_seconds": cpu,
        "forwarded_per_cpu_second": if cpu > 0.0 { received as f64 / cpu } else { 0.0 },
        "cpu_us_per_packet": if received > 0 { cpu * 1e6 / received as f64 } else { 0.0 },
        "forwarded_per_second": received as f64 / wall,
        "server_rss_mb": rss as f64 / 1_048_576.0,
        // Publisher → server → subscriber, video, both hops on loopback (the generator's
        // send and receive included): an upper bound of what the server adds.
        "latency_p50_ms": latency[0],
        "latency_p99_ms": latency[1],
        "latency_p999_ms": latency[2],
    }))
}

#[derive(Debug, Clone, clap::Args)]
pub struct ChurnArgs {
    #[arg(long)]
    base: String,
    #[arg(long)]
    server_pid: u32,
    #[arg(long)]
    password: String,
    /// Join/leave cycles in all.
    #[arg(long, default_value_t = 10_000)]
    cycles: usize,
    /// Cycles running at the same time.
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

/// One player's life: offer by WHEP, connect, leave by DELETE.
async fn play_once(http: &reqwest::Client, base: &str, room: i64, token: &str) -> Res<()> {
    let (socket, local, mut pc) = new_player().await?;
    let location = negotiate(http, base, &format!("/whep/{room}"), token, &mut pc, local).await?;
    let mut driver = Driver {
        pc,
        socket,
        local,
        connected: false,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    while !driver.connected {
        anyhow::ensure!(Instant::now() < deadline, "a player did not connect");
        let wait = driver.timeout();
        tokio::select! {
            got = driver.socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = got && !is_rtp(&buf[..n]) {
                    driver.feed(from, &buf[..n]);
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
        driver.flush().await;
    }
    let status = http
        .delete(format!("{base}{location}"))
        .bearer_auth(token)
        .send()
        .await?
        .status();
    anyhow::ensure!(status.as_u16() == 200, "DELETE {location}: {status}");
    Ok(())
}

/// Thousands of players join and leave while one publisher sends: the SFU's RSS must stay flat.
pub async fn churn(args: ChurnArgs) -> Res<()> {
    let http = reqwest::Client::new();
    let base = args.base.trim_end_matches('/').to_owned();
    let target = crate::hub::Target {
        base: base.clone(),
        flavor: crate::hub::Flavor::Livecamp,
        server_pid: args.server_pid,
        password: args.password.clone(),
        connect_concurrency: args.batch,
    };
    let (host, viewers, room) = crate::hub::prepare(&target).await?;
    let publishing = start_publisher(&http, &base, &host, room, 1500).await?;
    let run_batch = |n: usize, offset: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (http, base) = (http.clone(), base.clone());
                let token = viewers[(offset + i) % viewers.len()].clone();
                tokio::spawn(async move { play_once(&http, &base, room, &token).await })
            })
            .collect();
        async move {
            let mut failed = 0usize;
            for task in tasks {
                if !matches!(task.await, Ok(Ok(()))) {
                    failed += 1;
                }
            }
            failed
        }
    };
    // Warm-up: the first cycles fill the allocator's caches.
    let mut failed = run_batch(args.batch, 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let rss_start = proc_stats::rss_bytes(args.server_pid)?;
    let mut samples = vec![json!({"cycles": 0, "rss_mb": rss_start as f64 / 1_048_576.0})];
    let mut done = 0usize;
    let step = (args.cycles / 5).max(args.batch);
    while done < args.cycles {
        let n = args.batch.min(args.cycles - done);
        failed += run_batch(n, done).await;
        done += n;
        if done % step < args.batch || done == args.cycles {
            let rss = proc_stats::rss_bytes(args.server_pid)?;
            samples.push(json!({"cycles": done, "rss_mb": rss as f64 / 1_048_576.0}));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_end = proc_stats::rss_bytes(args.server_pid)?;
    publishing.stop.store(true, Ordering::Relaxed);
    let _ = publishing.task.await;
    let result = json!({
        "benchmark": "sfu-churn",
        "cycles": done,
        "batch": args.batch,
        "failed": failed,
        "seconds": started.elapsed().as_secs_f64(),
        "rss_start_mb": rss_start as f64 / 1_048_576.0,
        "rss_end_mb": rss_end as f64 / 1_048_576.0,
        "bytes_per_cycle": (rss_end as f64 - rss_start as f64) / done.max(1) as f64,
        "samples": samples,
    });
    println!("{result}");
    Ok(())
}
