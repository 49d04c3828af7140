//! The media endpoint: one task owns the UDP socket and every peer connection of the process.
//!
//! Datagrams are routed to their peer connection by the remote address once it is known, and
//! before that by the ICE username of the STUN binding request (`<our ufrag>:<their ufrag>`;
//! each connection gets its own random ufrag). A room has one main publisher (the host, or a
//! class's instructor) and any number of guests (a trainee on stage, the examinees of a
//! proctoring room); a subscriber plays one of them. A publisher's RTP is forwarded to each of
//! its connected subscribers: the packet's header extensions are dropped once (each subscriber
//! negotiated its own ids), then per subscriber the SSRC and payload type change and, for video,
//! the subscriber's [`LayerSelector`] picks the simulcast layer and renumbers it, before the
//! subscriber's connection encrypts it (SRTP) and the datagram is queued. Keyframe requests of
//! all subscribers reach the publisher at most once per second ([`KeyframeGate`]); a subscriber
//! that connects is first sent the publisher's latest keyframe and what followed, when that is
//! still kept and short ([`RetransmitBuffer::since_keyframe`]), so it does not wait for the gate.
//!
//! Invariants: a peer is in `by_ufrag` and `by_session` from creation to removal, in `by_addr`
//! from its first routed datagram to removal; a publisher is in its room's `publishers` and has
//! an `audiences` entry for its whole life, a subscriber is in its publisher's audience for its
//! whole life; `remove` is the only place that takes a peer out of all of them, and removing a
//! publisher removes its audience.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use foundation::{ApiError, ErrorCode};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::{Message as StunMessage, is_stun_message};
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::codec::VideoCodec;
use crate::keyframe::KeyframeGate;
use crate::peer::{IceCredentials, PeerKind, add_host_candidate, new_peer_connection};
use crate::recording::{Recorder, TrackKind};
use crate::retransmit::RetransmitBuffer;
use crate::simulcast::{LayerRanking, LayerSelector, Quality, Verdict};

/// Largest datagram read; WebRTC keeps packets under the path MTU (about 1,200 bytes).
const MAX_DATAGRAM: usize = 2048;
/// Keyframe requests to one publisher at most this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
/// Kernel buffer of the shared media socket, each way.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Timers of every connection are checked this often.
const TICK: Duration = Duration::from_millis(10);
/// Which of a publisher's layers are active is looked at this often (and at once when a
/// layer's first packet comes).
const RANK_EVERY: Duration = Duration::from_millis(100);
/// A new subscriber is sent the kept keyframe and what followed when that is at most this many
/// packets (about 1.5 s of 1.5 Mbit/s video); otherwise the publisher is asked for a keyframe.
const KEYFRAME_BURST_PACKETS: usize = 256;
/// … and when the keyframe is at most this old (a low layer's 256 packets are many seconds).
const KEYFRAME_BURST_AGE: Duration = Duration::from_millis(1500);
/// A player's NACKs are answered with at most this many packets a second (a 1.5 Mbit/s stream
/// is about 170), so a forged NACK cannot turn one small packet into megabytes.
const RETRANSMITS_PER_SECOND: f64 = 400.0;
/// Publishers in one room at most: the main one and its guests (a proctoring room's examinees).
pub const MAX_PUBLISHERS_PER_ROOM: usize = 100;

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Where the UDP socket binds (port 0 picks one).
    pub bind: SocketAddr,
    /// The address clients reach it at (the ICE host candidate).
    pub public_ip: IpAddr,
    /// A connection that has not connected this long after its offer is dropped.
    pub connect_timeout: Duration,
    /// Where publishers are recorded (`{dir}/{room}/{unix ms}-{ufrag}/`).
    pub recordings_dir: PathBuf,
}

/// Publishing (WHIP) or playing (WHEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Publish,
    Play,
}

/// In which capacity someone publishes into a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishAs {
    /// The room's host, or a live class's instructor: one at a time.
    Main,
    /// A trainee on stage, or an examinee's webcam: several at once, next to the main one.
    Guest,
}

/// One track a publisher sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackInfo {
    /// `audio` or `video`.
    pub kind: &'static str,
    /// MIME type, e.g. `video/VP8`.
    pub codec: String,
    /// Simulcast layers received so far (1 without simulcast).
    pub layers: usize,
}

/// What the endpoint tells the rest of the server (the hub announces it in the room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// `user` publishes these tracks in `room` (again whenever a track or layer is added).
    Publishing {
        room: i64,
        user: i64,
        role: PublishAs,
        tracks: Vec<TrackInfo>,
    },
    /// `user` no longer publishes in `room`: ended, replaced, or vanished after the ICE timeout.
    Stopped { room: i64, user: i64 },
    /// A recording's files are complete in `dir` (the publisher is gone).
    RecordingFinished { room: i64, dir: PathBuf },
}

/// Counters of the endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaStats {
    pub publishers: usize,
    pub subscribers: usize,
    pub received_datagrams: u64,
    pub unroutable_datagrams: u64,
    pub received_rtp: u64,
    pub forwarded_rtp: u64,
    pub keyframe_requests: u64,
    /// Handler panics caught (each dropped the peer it was handling).
    pub panics: u64,
    /// Packets sent again for subscribers' NACKs, from the publishers' shared buffers.
    pub retransmitted_rtp: u64,
    /// Subscribers started on the publisher's kept keyframe instead of waiting for a new one.
    pub keyframe_bursts: u64,
}

/// A WHIP or WHEP offer, access already checked.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub kind: SessionKind,
    pub room: i64,
    pub user: i64,
    pub offer: String,
    /// Publishers: record this session.
    pub record: bool,
    /// Publishers: main or guest.
    pub publish_as: PublishAs,
    /// Players: whose media (a user id); the main publisher, or else the first, when `None`.
    pub publisher: Option<i64>,
    /// Players: which simulcast layer fits.
    pub quality: Quality,
}

/// A session created by WHIP or WHEP.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Opaque id for the session's `Location`.
    pub session: String,
    /// The SDP answer.
    pub sdp: String,
    /// Where the session is recorded, when it is.
    pub recording: Option<PathBuf>,
}

enum Command {
    Open {
        request: OpenRequest,
        reply: oneshot::Sender<Result<Answer, ApiError>>,
    },
    Close {
        kind: SessionKind,
        room: i64,
        session: String,
        user: i64,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// End whatever `user` publishes in `room` (taken off the stage).
    EndPublisher {
        room: i64,
        user: i64,
        reply: oneshot::Sender<bool>,
    },
    Stats {
        reply: oneshot::Sender<MediaStats>,
    },
}

/// The handle to the endpoint task; cheap to clone.
#[derive(Clone)]
pub struct Media {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<MediaEvent>,
    candidate: SocketAddr,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("candidate", &self.candidate)
            .finish()
    }
}

fn unavailable() -> ApiError {
    ApiError::with_message(ErrorCode::Unavailable, "媒体服务暂不可用，请稍后重试")
}

impl Media {
    /// Binds the UDP socket and starts the endpoint task.
    pub async fn start(config: MediaConfig) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind(config.bind)
            .await
            .with_context(|| format!("cannot bind the media UDP port {}", config.bind))?;
        let local = socket.local_addr()?;
        // Every peer shares this socket: a burst (a keyframe to hundreds of players, a wave of
        // handshakes) must not overflow the kernel's default ~200 KB buffers, or DTLS
        // handshakes back off for seconds and publishers' packets are lost for everyone.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        let granted = sock.recv_buffer_size().unwrap_or_default();
        if granted < SOCKET_BUFFER_BYTES {
            tracing::warn!(
                granted,
                wanted = SOCKET_BUFFER_BYTES,
                "media socket buffer capped by the kernel: raise net.core.rmem_max and wmem_max"
            );
        }
        let candidate = SocketAddr::new(config.public_ip, local.port());
        let (commands, receiver) = mpsc::channel(1024);
        // A room of 100 publishers announces a few events each; a reader that lags loses news.
        let (events, _) = broadcast::channel(4096);
        let endpoint = Endpoint {
            candidate,
            config,
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_session: HashMap::new(),
            rooms: HashMap::new(),
            audiences: HashMap::new(),
            next_peer: 1,
            events: events.clone(),
            out: Vec::new(),
            stats: MediaStats::default(),
            current: None,
            next_rank: Instant::now(),
        };
        tokio::spawn(endpoint.run(Arc::new(socket), receiver));
        tracing::info!(%local, %candidate, "media endpoint listening");
        Ok(Self {
            commands,
            events,
            candidate,
        })
    }

    /// The address in the ICE candidates handed to clients.
    pub fn candidate(&self) -> SocketAddr {
        self.candidate
    }

    /// Publishing starts and stops.
    pub fn events(&self) -> broadcast::Receiver<MediaEvent> {
        self.events.subscribe()
    }

    /// Sends a command to the endpoint task and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())
    }

    /// Answers a WHIP or WHEP offer (access already checked).
    pub async fn open(&self, request: OpenRequest) -> Result<Answer, ApiError> {
        self.ask(|reply| Command::Open { request, reply }).await?
    }

    /// Ends a session of `user` (the one who opened it).
    pub async fn close(
        &self,
        kind: SessionKind,
        room: i64,
        session: String,
        user: i64,
    ) -> Result<(), ApiError> {
        self.ask(|reply| Command::Close {
            kind,
            room,
            session,
            user,
            reply,
        })
        .await?
    }

    /// Ends what `user` publishes in `room`, if anything; true when there was something.
    pub async fn end_publisher(&self, room: i64, user: i64) -> Result<bool, ApiError> {
        self.ask(|reply| Command::EndPublisher { room, user, reply })
            .await
    }

    pub async fn stats(&self) -> Result<MediaStats, ApiError> {
        self.ask(|reply| Command::Stats { reply }).await
    }
}

type PeerId = u64;

/// One encoding of a publisher's track: the only one, or a simulcast layer.
#[derive(Debug)]
struct Layer {
    ssrc: u32,
    /// Video only: the last packets, for NACKs and new subscribers.
    history: Option<RetransmitBuffer>,
}

/// A track a publisher sends.
#[derive(Debug)]
struct Track {
    id: String,
    receiver: RTCRtpReceiverId,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    video: VideoCodec,
    layers: Vec<Layer>,
}

impl Track {
    fn layer(&self, ssrc: u32) -> Option<&Layer> {
        self.layers.iter().find(|l| l.ssrc == ssrc)
    }
}

/// A track a subscriber receives.
#[derive(Debug)]
struct Outgoing {
    kind: RtpCodecKind,
    sender: RTCRtpSenderId,
    ssrc: u32,
    payload_type: u8,
    /// Video: which of the publisher's layers, renumbered.
    layers: Option<LayerSelector>,
}

struct Publishing {
    role: PublishAs,
    tracks: Vec<Track>,
    keyframes: KeyframeGate,
    /// Layers someone asked a keyframe of, sent when the gate opens.
    keyframe_layers: Vec<u32>,
    recorder: Option<Recorder>,
    /// The recording follows the best layer, renumbered like a subscriber's.
    recorded_layer: LayerSelector,
    ranking: LayerRanking,
    /// The active video layers, lowest first, as last ranked.
    active: Vec<u32>,
}

impl Publishing {
    fn video(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == RtpCodecKind::Video)
    }
}

enum Role {
    Publisher(Box<Publishing>),
    Subscriber {
        publisher: PeerId,
        outgoing: Vec<Outgoing>,
    },
}

/// A token bucket (sans IO): at most `rate` a second, in bursts of at most `rate`.
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn full(now: Instant, rate: f64) -> Self {
        Self {
            tokens: rate,
            at: now,
        }
    }

    fn take(&mut self, now: Instant, rate: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Peer {
    /// Players: retransmissions left (NACKs).
    resends: Budget,
    pc: RTCPeerConnection,
    room: i64,
    user: i64,
    session: String,
    ufrag: String,
    created: Instant,
    connected: bool,
    deadline: Option<Instant>,
    role: Role,
}

impl Peer {
    fn kind(&self) -> SessionKind {
        match self.role {
            Role::Publisher(_) => SessionKind::Publish,
            Role::Subscriber { .. } => SessionKind::Play,
        }
    }
}

#[derive(Default)]
struct RoomMedia {
    /// In the order they started.
    publishers: Vec<PeerId>,
}

struct Endpoint {
    candidate: SocketAddr,
    config: MediaConfig,
    peers: HashMap<PeerId, Peer>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    by_session: HashMap<String, PeerId>,
    rooms: HashMap<i64, RoomMedia>,
    /// Each publisher's subscribers.
    audiences: HashMap<PeerId, Vec<PeerId>>,
    next_peer: PeerId,
    events: broadcast::Sender<MediaEvent>,
    /// Datagrams to send, in order.
    out: Vec<(SocketAddr, BytesMut)>,
    stats: MediaStats,
    /// The peer whose input is being handled (to drop it if its handling panics).
    current: Option<PeerId>,
    /// When the publishers' layers are ranked next.
    next_rank: Instant,
}

enum Wake {
    Command(Option<Command>),
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Tick,
}

fn record_kind(kind: RtpCodecKind) -> TrackKind {
    match kind {
        RtpCodecKind::Audio => TrackKind::Audio,
        _ => TrackKind::Video,
    }
}

fn kind_name(kind: RtpCodecKind) -> &'static str {
    match kind {
        RtpCodecKind::Audio => "audio",
        _ => "video",
    }
}

fn invalid_sdp(detail: impl std::fmt::Display) -> ApiError {
    ApiError::with_message(ErrorCode::InvalidSdp, format!("SDP 无效：{detail}"))
}

/// A new peer connection with its own ICE credentials.
fn fresh_connection(
    now: Instant,
    kind: PeerKind,
) -> Result<(IceCredentials, RTCPeerConnection), ApiError> {
    let credentials = IceCredentials::random();
    let pc = new_peer_connection(now, &credentials, kind).map_err(|e| {
        tracing::error!(error = %e, "creating a peer connection");
        unavailable()
    })?;
    Ok((credentials, pc))
}

fn random_session() -> String {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Sends one packet to a subscriber's track.
fn send(
    pc: &mut RTCPeerConnection,
    now: Instant,
    sender: RTCRtpSenderId,
    packet: rtp::Packet,
) -> bool {
    match pc.rtp_sender(sender) {
        Some(mut sender) => match sender.write_rtp(now, packet) {
            Ok(()) => true,
            Err(e) => {
                tracing::trace!(error = %e, "forwarding");
                false
            }
        },
        None => false,
    }
}

impl Endpoint {
    async fn run(mut self, socket: Arc<UdpSocket>, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let wake = tokio::select! {
                command = commands.recv() => Wake::Command(command),
                received = socket.recv_from(&mut buf) => Wake::Datagram(received),
                _ = tick.tick() => Wake::Tick,
            };
            let now = Instant::now();
            if let Wake::Command(None) = wake {
                break;
            }
            // A bug triggered by one peer's input must not end media for every room: the
            // peer is dropped and the loop goes on. (The state of the other peers is not
            // touched by a handler that panics half-way through one peer.)
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match wake {
                Wake::Command(None) => {}
                Wake::Command(Some(command)) => self.command(now, command),
                Wake::Datagram(Ok((n, from))) => self.datagram(now, from, &buf[..n]),
                // ICMP errors of earlier sends surface here on Linux; nothing to do.
                Wake::Datagram(Err(e)) => tracing::debug!(error = %e, "media socket receive"),
                Wake::Tick => self.timers(now),
            }));
            if handled.is_err() {
                self.stats.panics += 1;
                if let Some(id) = self.current.take() {
                    tracing::error!(peer = id, "media handler panicked; dropping the peer");
                    self.remove(id, "a handler panicked");
                }
            }
            self.current = None;
            for (to, datagram) in self.out.drain(..) {
                if let Err(e) = socket.send_to(&datagram, to).await {
                    tracing::debug!(%to, error = %e, "media socket send");
                }
            }
        }
        tracing::info!("media endpoint stopped");
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Open { request, reply } => {
                let result = match request.kind {
                    SessionKind::Publish => self.open_publisher(now, request),
                    SessionKind::Play => self.open_subscriber(now, request),
                };
                let _ = reply.send(result);
            }
            Command::Close {
                kind,
                room,
                session,
                user,
                reply,
            } => {
                let found = self.by_session.get(&session).copied().filter(|id| {
                    self.peers
                        .get(id)
                        .is_some_and(|p| p.room == room && p.user == user && p.kind() == kind)
                });
                let result = match found {
                    Some(id) => {
                        self.remove(id, "ended by the client");
                        Ok(())
                    }
                    None => Err(ApiError::with_message(
                        ErrorCode::NotFound,
                        "推流或播放会话不存在",
                    )),
                };
                let _ = reply.send(result);
            }
            Command::EndPublisher { room, user, reply } => {
                let found = self.publisher_of(room, user);
                if let Some(id) = found {
                    self.remove(id, "taken off the stage");
                }
                let _ = reply.send(found.is_some());
            }
            Command::Stats { reply } => {
                let mut stats = self.stats.clone();
                stats.publishers = self.rooms.values().map(|r| r.publishers.len()).sum();
                stats.subscribers = self.audiences.values().map(Vec::len).sum();
                let _ = reply.send(stats);
            }
        }
    }

    /// The peer publishing as `user` in `room`.
    fn publisher_of(&self, room: i64, user: i64) -> Option<PeerId> {
        self.rooms
            .get(&room)?
            .publishers
            .iter()
            .copied()
            .find(|id| self.peers.get(id).is_some_and(|p| p.user == user))
    }

    /// Applies the offer, adds our candidate, and returns the answer.
    fn negotiate(
        &self,
        now: Instant,
        pc: &mut RTCPeerConnection,
        offer: String,
    ) -> Result<String, ApiError> {
        let offer = RTCSessionDescription::offer(offer).map_err(invalid_sdp)?;
        pc.set_remote_description(now, offer).map_err(invalid_sdp)?;
        add_host_candidate(pc, self.candidate).map_err(|e| {
            tracing::error!(error = %e, "adding the host candidate");
            unavailable()
        })?;
        let answer = pc.create_answer(None).map_err(invalid_sdp)?;
        pc.set_local_description(now, answer).map_err(invalid_sdp)?;
        pc.local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| invalid_sdp("no answer"))
    }

    fn has_media(offer: &str) -> bool {
        offer
            .lines()
            .any(|l| l.starts_with("m=audio") || l.starts_with("m=video"))
    }

    fn open_publisher(&mut self, now: Instant, request: OpenRequest) -> Result<Answer, ApiError> {
        let OpenRequest {
            room,
            user,
            offer,
            record,
            publish_as,
            ..
        } = request;
        if !Self::has_media(&offer) {
            return Err(invalid_sdp("没有音频或视频"));
        }
        // The same person publishing again (a reload, OBS restarting) replaces the old
        // session; another main publisher has to wait; guests share the room up to a limit.
        let publishers = self
            .rooms
            .get(&room)
            .map(|r| r.publishers.clone())
            .unwrap_or_default();
        let mut others = 0;
        let mut replaced = None;
        for id in publishers {
            let Some(peer) = self.peers.get(&id) else {
                continue;
            };
            let Role::Publisher(publishing) = &peer.role else {
                continue;
            };
            if peer.user == user {
                replaced = Some(id);
            } else if publish_as == PublishAs::Main && publishing.role == PublishAs::Main {
                return Err(ApiError::new(ErrorCode::AlreadyPublishing));
            } else {
                others += 1;
            }
        }
        if others >= MAX_PUBLISHERS_PER_ROOM {
            return Err(ApiError::with_message(
                ErrorCode::AlreadyPublishing,
                "本房间同时推流的人数已满",
            ));
        }
        let (credentials, mut pc) = fresh_connection(now, PeerKind::Publisher)?;
        let sdp = self.negotiate(now, &mut pc, offer)?;
        // Only a new session that can start replaces the running one.
        if let Some(id) = replaced {
            self.remove(id, "replaced by a new session of the same user");
        }
        let recorder = if record {
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let dir = self
                .config
                .recordings_dir
                .join(room.to_string())
                .join(format!("{started}-{}", credentials.ufrag));
            match Recorder::start(dir, now) {
                Ok(recorder) => Some(recorder),
                Err(e) => {
                    tracing::error!(room, error = %e, "cannot start a recording");
                    return Err(ApiError::with_message(
                        ErrorCode::Unavailable,
                        "无法开始录制（磁盘不可写），请联系管理员",
                    ));
                }
            }
        } else {
            None
        };
        let recording = recorder.as_ref().map(|r| r.dir().to_path_buf());
        let id = self.insert(
            now,
            pc,
            room,
            user,
            credentials,
            Role::Publisher(Box::new(Publishing {
                role: publish_as,
                tracks: Vec::new(),
                keyframes: KeyframeGate::new(KEYFRAME_INTERVAL),
                keyframe_layers: Vec::new(),
                recorder,
                recorded_layer: LayerSelector::new(Quality::High),
                ranking: LayerRanking::default(),
                active: Vec::new(),
            })),
        );
        self.rooms.entry(room).or_default().publishers.push(id);
        self.audiences.insert(id, Vec::new());
        let session = self.peers[&id].session.clone();
        tracing::info!(
            room,
            user,
            role = ?publish_as,
            recording = recording.is_some(),
            "publisher offered"
        );
        Ok(Answer {
            session,
            sdp,
            recording,
        })
    }

    /// Whom a player plays: the publisher asked for, or the room's main one, or its first.
    fn choose_publisher(&self, room: i64, wanted: Option<i64>) -> Option<PeerId> {
        let publishers = &self.rooms.get(&room)?.publishers;
        let peer = |id: &PeerId| self.peers.get(id);
        match wanted {
            Some(user) => publishers
                .iter()
                .copied()
                .find(|id| peer(id).is_some_and(|p| p.user == user)),
            None => publishers
                .iter()
                .copied()
                .find(|id| {
                    peer(id).is_some_and(
                        |p| matches!(&p.role, Role::Publisher(p) if p.role == PublishAs::Main),
                    )
                })
                .or_else(|| publishers.first().copied()),
        }
    }

    fn open_subscriber(&mut self, now: Instant, request: OpenRequest) -> Result<Answer, ApiError> {
        let OpenRequest {
            room,
            user,
            offer,
            publisher: wanted,
            quality,
            ..
        } = request;
        if !Self::has_media(&offer) {
            return Err(invalid_sdp("没有音频或视频"));
        }
        let publisher = self.choose_publisher(room, wanted);
        // What the publisher sends: (kind, codec) of each track.
        let tracks: Vec<(RtpCodecKind, RTCRtpCodec)> = publisher
            .and_then(|id| self.peers.get(&id))
            .map(|p| match &p.role {
                Role::Publisher(publishing) => publishing
                    .tracks
                    .iter()
                    .map(|t| (t.kind, t.codec.clone()))
                    .collect(),
                Role::Subscriber { .. } => Vec::new(),
            })
            .unwrap_or_default();
        let Some(publisher) = publisher.filter(|_| !tracks.is_empty()) else {
            return Err(match wanted {
                Some(_) => ApiError::with_message(ErrorCode::NotPublishing, "该用户没有在推流"),
                None => ApiError::new(ErrorCode::NotPublishing),
            });
        };
        let (credentials, mut pc) = fresh_connection(now, PeerKind::Subscriber)?;
        let mut outgoing = Vec::new();
        for (kind, codec) in &tracks {
            let ssrc = rand::random::<u32>();
            let name = format!("{}-{room}", kind_name(*kind));
            let local = MediaStreamTrack::new(
                format!("livecamp-{room}"),
                name.clone(),
                name,
                *kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: codec.clone(),
                    ..Default::default()
                }],
            );
            let sender = pc.add_track(local).map_err(|e| {
                tracing::error!(error = %e, "adding a track");
                unavailable()
            })?;
            outgoing.push(Outgoing {
                kind: *kind,
                sender,
                ssrc,
                payload_type: 0,
                layers: (*kind == RtpCodecKind::Video).then(|| LayerSelector::new(quality)),
            });
        }
        let sdp = self.negotiate(now, &mut pc, offer)?;
        // The payload type this subscriber negotiated for the publisher's codec; a track whose
        // codec the subscriber cannot take is not sent.
        outgoing.retain_mut(|out| {
            let Some((_, codec)) = tracks.iter().find(|(kind, _)| *kind == out.kind) else {
                return false;
            };
            let Some(mut sender) = pc.rtp_sender(out.sender) else {
                return false;
            };
            let codecs = &sender.get_parameters().rtp_parameters.codecs;
            let found = codecs
                .iter()
                .find(|c| {
                    c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type)
                        && c.rtp_codec.sdp_fmtp_line == codec.sdp_fmtp_line
                })
                .or_else(|| {
                    codecs
                        .iter()
                        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type))
                });
            match found {
                Some(codec) => {
                    out.payload_type = codec.payload_type;
                    true
                }
                None => false,
            }
        });
        if outgoing.is_empty() {
            return Err(ApiError::with_message(
                ErrorCode::InvalidSdp,
                "播放端不支持主播使用的音视频编码",
            ));
        }
        let id = self.insert(
            now,
            pc,
            room,
            user,
            credentials,
            Role::Subscriber {
                publisher,
                outgoing,
            },
        );
        self.audiences.entry(publisher).or_default().push(id);
        let session = self.peers[&id].session.clone();
        tracing::debug!(room, user, ?quality, "subscriber offered");
        Ok(Answer {
            session,
            sdp,
            recording: None,
        })
    }

    fn insert(
        &mut self,
        now: Instant,
        mut pc: RTCPeerConnection,
        room: i64,
        user: i64,
        credentials: IceCredentials,
        role: Role,
    ) -> PeerId {
        let id = self.next_peer;
        self.next_peer += 1;
        let session = random_session();
        self.by_ufrag.insert(credentials.ufrag.clone(), id);
        self.by_session.insert(session.clone(), id);
        let deadline = pc.poll_timeout();
        self.peers.insert(
            id,
            Peer {
                resends: Budget::full(now, RETRANSMITS_PER_SECOND),
                pc,
                room,
                user,
                session,
                ufrag: credentials.ufrag,
                created: now,
                connected: false,
                deadline,
                role,
            },
        );
        self.flush_writes(id);
        id
    }

    /// Takes a peer out of every index, closes its connection and, for a publisher, its
    /// subscribers' too (they are told through the hub and play again when it is back).
    fn remove(&mut self, id: PeerId, why: &str) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        if let Role::Publisher(publishing) = &mut peer.role
            && let Some(recorder) = publishing.recorder.take()
        {
            // Closing waits for the writer thread to flush: not on this loop.
            let (events, room) = (self.events.clone(), peer.room);
            tokio::task::spawn_blocking(move || {
                let dir = recorder.finish();
                let _ = events.send(MediaEvent::RecordingFinished { room, dir });
            });
        }
        tracing::debug!(
            room = peer.room,
            user = peer.user,
            why,
            "media session removed"
        );
        let _ = peer.pc.close();
        while let Some(datagram) = peer.pc.poll_write() {
            self.out
                .push((datagram.transport.peer_addr, datagram.message));
        }
        self.by_ufrag.remove(&peer.ufrag);
        self.by_session.remove(&peer.session);
        self.by_addr.retain(|_, p| *p != id);
        let mut orphans = Vec::new();
        match &peer.role {
            Role::Publisher(_) => {
                orphans = self.audiences.remove(&id).unwrap_or_default();
                if let Some(room) = self.rooms.get_mut(&peer.room) {
                    room.publishers.retain(|p| *p != id);
                    if room.publishers.is_empty() {
                        self.rooms.remove(&peer.room);
                    }
                }
                let _ = self.events.send(MediaEvent::Stopped {
                    room: peer.room,
                    user: peer.user,
                });
            }
            Role::Subscriber { publisher, .. } => {
                if let Some(audience) = self.audiences.get_mut(publisher) {
                    audience.retain(|s| *s != id);
                }
            }
        }
        for orphan in orphans {
            self.remove(orphan, "the publisher left");
        }
    }

    /// Which peer a datagram belongs to.
    fn route(&mut self, from: SocketAddr, data: &[u8]) -> Option<PeerId> {
        if let Some(id) = self.by_addr.get(&from) {
            return Some(*id);
        }
        if !is_stun_message(data) {
            return None;
        }
        let mut message = StunMessage::new();
        message.unmarshal_binary(data).ok()?;
        let username = message.get(ATTR_USERNAME).ok()?;
        let username = std::str::from_utf8(&username).ok()?;
        let ours = username.split(':').next()?;
        let id = *self.by_ufrag.get(ours)?;
        // The ICE agent checks the message integrity; a forged check with a guessed ufrag only
        // maps an address that then fails the agent's checks.
        self.by_addr.insert(from, id);
        Some(id)
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.received_datagrams += 1;
        let Some(id) = self.route(from, data) else {
            self.stats.unroutable_datagrams += 1;
            return;
        };
        self.current = Some(id);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                // The agent matches checks against its candidate, the advertised address.
                local_addr: self.candidate,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = peer.pc.handle_read(message) {
            tracing::debug!(error = %e, "media datagram");
        }
        self.drain(now, id);
    }

    fn flush_writes(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            while let Some(datagram) = peer.pc.poll_write() {
                self.out
                    .push((datagram.transport.peer_addr, datagram.message));
            }
            peer.deadline = peer.pc.poll_timeout();
        }
    }

    /// Takes everything a peer has to say after an input: datagrams, events, media.
    fn drain(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mut events = Vec::new();
        while let Some(event) = peer.pc.poll_event() {
            events.push(event);
        }
        let mut media = Vec::new();
        let mut wants_keyframe = false;
        let mut nacked: Vec<(u32, u16)> = Vec::new();
        while let Some(message) = peer.pc.poll_read() {
            match message.message {
                RTCMessage::RtpPacket(track, packet) => media.push((track, packet)),
                RTCMessage::RtcpPacket(_, packets)
                    if matches!(peer.role, Role::Subscriber { .. }) =>
                {
                    for packet in &packets {
                        let any = packet.as_any();
                        wants_keyframe |=
                            any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>();
                        if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                            for pair in &nack.nacks {
                                nacked.extend(
                                    pair.packet_list()
                                        .into_iter()
                                        .map(|seq| (nack.media_ssrc, seq)),
                                );
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        self.flush_writes(id);
        for event in events {
            self.event(now, id, event);
        }
        if !media.is_empty() {
            self.forward(now, id, media);
        }
        if wants_keyframe {
            self.subscriber_wants_keyframe(now, id);
        }
        if !nacked.is_empty() {
            self.retransmit(now, id, &nacked);
        }
    }

    /// Answers a subscriber's NACKs from its publisher's retransmission buffers.
    fn retransmit(&mut self, now: Instant, subscriber: PeerId, nacked: &[(u32, u16)]) {
        let Some(Peer {
            role:
                Role::Subscriber {
                    publisher,
                    outgoing,
                },
            ..
        }) = self.peers.get(&subscriber)
        else {
            return;
        };
        let Some(Peer {
            role: Role::Publisher(publishing),
            ..
        }) = self.peers.get(publisher)
        else {
            return;
        };
        let Some(video) = publishing.video() else {
            return;
        };
        let Some((index, out)) = outgoing
            .iter()
            .enumerate()
            .find(|(_, o)| o.kind == RtpCodecKind::Video)
        else {
            return;
        };
        let Some(selector) = &out.layers else {
            return;
        };
        // Each NACKed number the subscriber saw, once, as the publisher's number on its layer.
        let mut asked: Vec<u16> = nacked
            .iter()
            .filter(|(ssrc, _)| *ssrc == out.ssrc)
            .map(|(_, seq)| *seq)
            .collect();
        asked.sort_unstable();
        asked.dedup();
        asked.truncate(RETRANSMITS_PER_SECOND as usize);
        let mut copies = Vec::with_capacity(asked.len());
        for seq in asked {
            let Some((layer, original)) = selector.original(seq) else {
                continue;
            };
            let Some(packet) = video
                .layer(layer)
                .and_then(|l| l.history.as_ref())
                .and_then(|h| h.get(original))
            else {
                continue;
            };
            let mut copy = packet.clone();
            copy.header.ssrc = out.ssrc;
            copy.header.payload_type = out.payload_type;
            copy.header.sequence_number = seq;
            copy.header.timestamp = selector.timestamp(copy.header.timestamp);
            copies.push(copy);
        }
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return;
        };
        let Role::Subscriber { outgoing, .. } = &peer.role else {
            return;
        };
        let sender = outgoing[index].sender;
        for copy in copies {
            if !peer.resends.take(now, RETRANSMITS_PER_SECOND) {
                break;
            }
            if send(&mut peer.pc, now, sender, copy) {
                self.stats.retransmitted_rtp += 1;
            }
        }
        self.flush_writes(subscriber);
    }

    fn event(&mut self, now: Instant, id: PeerId, event: RTCPeerConnectionEvent) {
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                RTCPeerConnectionState::Connected => {
                    let Some(peer) = self.peers.get_mut(&id) else {
                        return;
                    };
                    peer.connected = true;
                    tracing::debug!(room = peer.room, user = peer.user, "media connected");
                    if matches!(peer.role, Role::Subscriber { .. }) {
                        self.start_subscriber(now, id);
                    }
                }
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    self.remove(id, "connection failed or closed");
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                self.track_opened(
                    now,
                    id,
                    init.receiver_id,
                    init.track_id,
                    init.ssrc,
                    init.rid,
                );
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) => {
                if let Some(Peer {
                    role: Role::Publisher(publishing),
                    ..
                }) = self.peers.get_mut(&id)
                {
                    publishing.tracks.retain(|t| t.id != track_id);
                }
            }
            _ => {}
        }
    }

    /// A subscriber just connected: it gets the publisher's kept keyframe and what followed at
    /// once when that is short, or else the publisher is asked for a keyframe.
    fn start_subscriber(&mut self, now: Instant, id: PeerId) {
        let Some(Peer {
            role: Role::Subscriber { publisher, .. },
            ..
        }) = self.peers.get(&id)
        else {
            return;
        };
        let publisher = *publisher;
        // A subscriber and its publisher are two different peers, so the keys never overlap
        // (the one case `get_disjoint_mut` panics on).
        let [Some(sub), Some(publ)] = self.peers.get_disjoint_mut([&id, &publisher]) else {
            return;
        };
        let (Role::Subscriber { outgoing, .. }, Role::Publisher(publishing)) =
            (&mut sub.role, &publ.role)
        else {
            return;
        };
        let Some(out) = outgoing.iter_mut().find(|o| o.kind == RtpCodecKind::Video) else {
            return;
        };
        let (sender, ssrc, payload_type) = (out.sender, out.ssrc, out.payload_type);
        let Some(selector) = &mut out.layers else {
            return;
        };
        let Some(layer) = selector.retarget(&publishing.active) else {
            return; // no video layer active yet: asked for when one is
        };
        let kept = publishing
            .video()
            .and_then(|t| t.layer(layer))
            .and_then(|l| l.history.as_ref())
            .and_then(|h| h.since_keyframe(KEYFRAME_BURST_PACKETS))
            .filter(|(at, _)| now.saturating_duration_since(*at) <= KEYFRAME_BURST_AGE);
        let Some((_, packets)) = kept else {
            self.request_keyframe(now, publisher, layer);
            return;
        };
        selector.start_on(layer);
        for packet in packets {
            let h = &packet.header;
            if let Verdict::Forward { seq, ts } =
                selector.packet(now, layer, h.sequence_number, h.timestamp, false)
            {
                let mut copy = packet.clone();
                copy.header.ssrc = ssrc;
                copy.header.payload_type = payload_type;
                copy.header.sequence_number = seq;
                copy.header.timestamp = ts;
                if send(&mut sub.pc, now, sender, copy) {
                    self.stats.forwarded_rtp += 1;
                }
            }
        }
        self.stats.keyframe_bursts += 1;
        self.flush_writes(id);
    }

    /// A player lost pictures (PLI/FIR): ask for a keyframe of the layer it gets.
    fn subscriber_wants_keyframe(&mut self, now: Instant, id: PeerId) {
        let Some(Peer {
            role:
                Role::Subscriber {
                    publisher,
                    outgoing,
                },
            ..
        }) = self.peers.get(&id)
        else {
            return;
        };
        let layer = outgoing
            .iter()
            .find_map(|o| o.layers.as_ref())
            .and_then(LayerSelector::wanted);
        if let Some(layer) = layer {
            self.request_keyframe(now, *publisher, layer);
        }
    }

    fn track_opened(
        &mut self,
        _now: Instant,
        id: PeerId,
        receiver: RTCRtpReceiverId,
        track_id: String,
        ssrc: u32,
        rid: Option<String>,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let (room, user) = (peer.room, peer.user);
        let Some(receiver_handle) = peer.pc.rtp_receiver(receiver) else {
            return;
        };
        let track = receiver_handle.track();
        let kind = track.kind();
        let Some(codec) = track.codec(ssrc).cloned() else {
            return;
        };
        let Role::Publisher(publishing) = &mut peer.role else {
            return;
        };
        let layer = Layer {
            ssrc,
            history: (kind == RtpCodecKind::Video).then(RetransmitBuffer::new),
        };
        match publishing.tracks.iter_mut().find(|t| t.kind == kind) {
            // Simulcast layers open one by one on the same track.
            Some(existing) if existing.id == track_id => {
                if existing.layer(ssrc).is_some() {
                    return;
                }
                existing.layers.push(layer);
            }
            // One track of each kind is forwarded.
            Some(_) => return,
            None => {
                if let Some(recorder) = &publishing.recorder {
                    recorder.codec(record_kind(kind), &codec.mime_type, codec.clock_rate);
                }
                tracing::info!(room, user, kind = kind_name(kind), codec = %codec.mime_type, "publishing");
                publishing.tracks.push(Track {
                    id: track_id,
                    receiver,
                    kind,
                    video: VideoCodec::from_mime(&codec.mime_type),
                    codec,
                    layers: vec![layer],
                });
            }
        }
        if kind == RtpCodecKind::Video {
            publishing.ranking.add(ssrc, rid.as_deref());
        }
        let tracks = publishing
            .tracks
            .iter()
            .map(|t| TrackInfo {
                kind: kind_name(t.kind),
                codec: t.codec.mime_type.clone(),
                layers: t.layers.len(),
            })
            .collect();
        // No keyframe request here: an encoder starts with one, and a request now would hold
        // the next subscriber's for up to a second.
        let _ = self.events.send(MediaEvent::Publishing {
            room,
            user,
            role: publishing.role,
            tracks,
        });
    }

    /// Forwards a publisher's packets to its connected subscribers (and its recording).
    fn forward(&mut self, now: Instant, publisher: PeerId, media: Vec<(String, rtp::Packet)>) {
        let Some(Peer {
            role: Role::Publisher(publishing),
            ..
        }) = self.peers.get_mut(&publisher)
        else {
            return;
        };
        // (kind, layer, starts a keyframe, packet)
        let mut packets: Vec<(RtpCodecKind, u32, bool, rtp::Packet)> =
            Vec::with_capacity(media.len());
        let mut new_layer = false;
        for (track_id, mut packet) in media {
            let Some(track) = publishing.tracks.iter_mut().find(|t| t.id == track_id) else {
                continue;
            };
            let ssrc = packet.header.ssrc;
            let Some(layer) = track.layers.iter_mut().find(|l| l.ssrc == ssrc) else {
                continue; // a layer not opened yet
            };
            // Each subscriber negotiated its own extension ids: send none.
            packet.header.extension = false;
            packet.header.extensions.clear();
            packet.header.extension_profile = 0;
            packet.header.extensions_padding = 0;
            let mut key = false;
            if let Some(history) = &mut layer.history {
                key = track.video.starts_keyframe(&packet.payload);
                history.push(now, &packet, key);
                publishing.ranking.packet(now, ssrc, packet.payload.len());
                // Padding (a paused layer's) is no news of a layer.
                new_layer |= !packet.payload.is_empty() && !publishing.active.contains(&ssrc);
            }
            packets.push((track.kind, ssrc, key, packet));
        }
        self.stats.received_rtp += packets.len() as u64;
        // A layer's first packet (usually a keyframe) is ranked before it is forwarded, so the
        // recording and the players waiting for that layer start on it.
        if new_layer {
            self.rank_layers(now, publisher);
        }
        if let Some(Peer {
            role: Role::Publisher(publishing),
            ..
        }) = self.peers.get_mut(&publisher)
            && let Some(recorder) = &publishing.recorder
        {
            for (kind, layer, key, packet) in &packets {
                if *kind != RtpCodecKind::Video {
                    recorder.packet(now, TrackKind::Audio, packet);
                    continue;
                }
                let h = &packet.header;
                if let Verdict::Forward { seq, ts } = publishing.recorded_layer.packet(
                    now,
                    *layer,
                    h.sequence_number,
                    h.timestamp,
                    *key,
                ) {
                    let mut copy = packet.clone();
                    copy.header.sequence_number = seq;
                    copy.header.timestamp = ts;
                    recorder.packet(now, TrackKind::Video, &copy);
                }
            }
        }
        let Some(audience) = self.audiences.get(&publisher) else {
            return;
        };
        for &subscriber in audience {
            let Some(peer) = self.peers.get_mut(&subscriber) else {
                continue;
            };
            if !peer.connected {
                continue;
            }
            let Role::Subscriber { outgoing, .. } = &mut peer.role else {
                continue;
            };
            for (kind, layer, key, packet) in &packets {
                let Some(out) = outgoing.iter_mut().find(|o| o.kind == *kind) else {
                    continue;
                };
                let mut copy = packet.clone();
                if let Some(selector) = &mut out.layers {
                    let h = &packet.header;
                    match selector.packet(now, *layer, h.sequence_number, h.timestamp, *key) {
                        Verdict::Drop => continue,
                        Verdict::Forward { seq, ts } => {
                            copy.header.sequence_number = seq;
                            copy.header.timestamp = ts;
                        }
                    }
                }
                copy.header.ssrc = out.ssrc;
                copy.header.payload_type = out.payload_type;
                if send(&mut peer.pc, now, out.sender, copy) {
                    self.stats.forwarded_rtp += 1;
                }
            }
            while let Some(datagram) = peer.pc.poll_write() {
                self.out
                    .push((datagram.transport.peer_addr, datagram.message));
            }
            peer.deadline = peer.pc.poll_timeout();
        }
    }

    /// Looks at which of a publisher's layers are active; when that changed, moves its
    /// subscribers (and its recording) to the layers that now fit, asking for keyframes.
    fn rank_layers(&mut self, now: Instant, publisher: PeerId) {
        let Some(Peer {
            role: Role::Publisher(publishing),
            ..
        }) = self.peers.get_mut(&publisher)
        else {
            return;
        };
        if publishing.ranking.len() == 0 {
            return;
        }
        let active = publishing.ranking.active(now);
        if active == publishing.active {
            return;
        }
        let mut wanted: Vec<u32> = Vec::new();
        if publishing.recorder.is_some() {
            wanted.extend(publishing.recorded_layer.retarget(&active));
        }
        publishing.active = active.clone();
        let active = &active;
        for subscriber in self.audiences.get(&publisher).into_iter().flatten() {
            let Some(Peer {
                role: Role::Subscriber { outgoing, .. },
                connected: true,
                ..
            }) = self.peers.get_mut(subscriber)
            else {
                continue;
            };
            for selector in outgoing.iter_mut().filter_map(|o| o.layers.as_mut()) {
                wanted.extend(selector.retarget(active));
            }
        }
        for layer in wanted {
            self.request_keyframe(now, publisher, layer);
        }
    }

    /// Asks a publisher for a keyframe of `layer`, at most once per second in all.
    fn request_keyframe(&mut self, now: Instant, publisher: PeerId, layer: u32) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Role::Publisher(publishing) = &mut peer.role else {
            return;
        };
        if !publishing.keyframe_layers.contains(&layer) {
            publishing.keyframe_layers.push(layer);
        }
        if publishing.keyframes.request(now) {
            Self::send_pli(&mut peer.pc, now, publishing);
            self.stats.keyframe_requests += 1;
            self.flush_writes(publisher);
        }
    }

    /// Asks a publisher for a keyframe on each layer someone waits for.
    fn send_pli(pc: &mut RTCPeerConnection, now: Instant, publishing: &mut Publishing) {
        let layers = std::mem::take(&mut publishing.keyframe_layers);
        let Some(video) = publishing.video() else {
            return;
        };
        let Some(mut receiver) = pc.rtp_receiver(video.receiver) else {
            return;
        };
        let requests = layers
            .into_iter()
            .filter(|ssrc| video.layer(*ssrc).is_some())
            .map(|media_ssrc| {
                Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                }) as Box<dyn rtc::rtcp::Packet>
            })
            .collect::<Vec<_>>();
        if !requests.is_empty() {
            let _ = receiver.write_rtcp(now, requests);
        }
    }

    /// Runs due timers, sends kept keyframe requests, ranks layers, drops connections that
    /// never connected.
    fn timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        let mut stale = Vec::new();
        let mut keyframes_due = Vec::new();
        let mut publishers = Vec::new();
        for (&id, peer) in &mut self.peers {
            if peer.deadline.is_some_and(|d| d <= now) {
                due.push(id);
            }
            if !peer.connected && now.duration_since(peer.created) > self.config.connect_timeout {
                stale.push(id);
            }
            if let Role::Publisher(publishing) = &mut peer.role {
                publishers.push(id);
                if publishing.keyframes.poll(now) {
                    keyframes_due.push(id);
                }
            }
        }
        for id in due {
            self.current = Some(id);
            if let Some(peer) = self.peers.get_mut(&id) {
                let _ = peer.pc.handle_timeout(now);
            }
            self.drain(now, id);
        }
        for id in keyframes_due {
            if let Some(peer) = self.peers.get_mut(&id)
                && let Role::Publisher(publishing) = &mut peer.role
            {
                Self::send_pli(&mut peer.pc, now, publishing);
                self.stats.keyframe_requests += 1;
            }
            self.flush_writes(id);
        }
        if now >= self.next_rank {
            self.next_rank = now + RANK_EVERY;
            for id in publishers {
                self.current = Some(id);
                self.rank_layers(now, id);
            }
        }
        for id in stale {
            self.remove(id, "never connected");
        }
    }
}
