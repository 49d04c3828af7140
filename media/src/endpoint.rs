//! The media endpoint: one task owns the UDP socket and every peer connection of the process.
//!
//! Datagrams are routed to their peer connection by the remote address once it is known, and
//! before that by the ICE username of the STUN binding request (`<our ufrag>:<their ufrag>`;
//! each connection gets its own random ufrag). A publisher's RTP is forwarded to every connected
//! subscriber of its room: the packet's header extensions are dropped once (each subscriber
//! negotiated its own ids), then per subscriber only the SSRC and payload type change before the
//! subscriber's connection encrypts it (SRTP) and the datagram is queued. Keyframe requests of
//! all subscribers reach the publisher at most once per second ([`KeyframeGate`]).
//!
//! Invariants: a peer is in `by_ufrag` from creation to removal, in `by_addr` from its first
//! routed datagram to removal, and in its room's `publisher`/`subscribers` for its whole life;
//! `remove` is the only place that takes it out of all of them.

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

use crate::keyframe::KeyframeGate;
use crate::peer::{IceCredentials, PeerKind, add_host_candidate, new_peer_connection};
use crate::recording::{Recorder, TrackKind};
use crate::retransmit::RetransmitBuffer;

/// Largest datagram read; WebRTC keeps packets under the path MTU (about 1,200 bytes).
const MAX_DATAGRAM: usize = 2048;
/// Keyframe requests to one publisher at most this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
/// Kernel buffer of the shared media socket, each way.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Timers of every connection are checked this often.
const TICK: Duration = Duration::from_millis(10);

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

/// One track a publisher sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackInfo {
    /// `audio` or `video`.
    pub kind: &'static str,
    /// MIME type, e.g. `video/VP8`.
    pub codec: String,
}

/// What the endpoint tells the rest of the server (the hub announces it in the room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The room's publisher sends these tracks (again whenever one is added).
    Publishing {
        room: i64,
        user: i64,
        tracks: Vec<TrackInfo>,
    },
    /// The room's publisher is gone: ended, replaced, or vanished after the ICE timeout.
    Stopped { room: i64 },
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
        kind: SessionKind,
        room: i64,
        user: i64,
        offer: String,
        record: bool,
        reply: oneshot::Sender<Result<Answer, ApiError>>,
    },
    Close {
        kind: SessionKind,
        room: i64,
        session: String,
        user: i64,
        reply: oneshot::Sender<Result<(), ApiError>>,
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
        let (events, _) = broadcast::channel(256);
        let endpoint = Endpoint {
            candidate,
            config,
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_session: HashMap::new(),
            rooms: HashMap::new(),
            next_peer: 1,
            events: events.clone(),
            out: Vec::new(),
            stats: MediaStats::default(),
            current: None,
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

    /// Answers a WHIP or WHEP offer (access already checked); a publisher is recorded when
    /// `record`.
    pub async fn open(
        &self,
        kind: SessionKind,
        room: i64,
        user: i64,
        offer: String,
        record: bool,
    ) -> Result<Answer, ApiError> {
        self.ask(|reply| Command::Open {
            kind,
            room,
            user,
            offer,
            record,
            reply,
        })
        .await?
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

    pub async fn stats(&self) -> Result<MediaStats, ApiError> {
        self.ask(|reply| Command::Stats { reply }).await
    }
}

type PeerId = u64;

/// A track a publisher sends.
#[derive(Debug, Clone)]
struct Track {
    id: String,
    receiver: RTCRtpReceiverId,
    kind: RtpCodecKind,
    ssrc: u32,
    codec: RTCRtpCodec,
}

/// A track a subscriber receives.
#[derive(Debug)]
struct Outgoing {
    kind: RtpCodecKind,
    sender: RTCRtpSenderId,
    ssrc: u32,
    payload_type: u8,
}

enum Role {
    Publisher {
        tracks: Vec<Track>,
        keyframes: KeyframeGate,
        recorder: Option<Recorder>,
        /// The last video packets, for every subscriber's NACKs.
        video_history: RetransmitBuffer,
    },
    Subscriber {
        outgoing: Vec<Outgoing>,
    },
}

struct Peer {
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
            Role::Publisher { .. } => SessionKind::Publish,
            Role::Subscriber { .. } => SessionKind::Play,
        }
    }
}

#[derive(Default)]
struct RoomMedia {
    publisher: Option<PeerId>,
    subscribers: Vec<PeerId>,
}

struct Endpoint {
    candidate: SocketAddr,
    config: MediaConfig,
    peers: HashMap<PeerId, Peer>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    by_session: HashMap<String, PeerId>,
    rooms: HashMap<i64, RoomMedia>,
    next_peer: PeerId,
    events: broadcast::Sender<MediaEvent>,
    /// Datagrams to send, in order.
    out: Vec<(SocketAddr, BytesMut)>,
    stats: MediaStats,
    /// The peer whose input is being handled (to drop it if its handling panics).
    current: Option<PeerId>,
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
            Command::Open {
                kind,
                room,
                user,
                offer,
                record,
                reply,
            } => {
                let result = match kind {
                    SessionKind::Publish => self.open_publisher(now, room, user, offer, record),
                    SessionKind::Play => self.open_subscriber(now, room, user, offer),
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
            Command::Stats { reply } => {
                let mut stats = self.stats.clone();
                stats.publishers = self
                    .rooms
                    .values()
                    .filter(|r| r.publisher.is_some())
                    .count();
                stats.subscribers = self.rooms.values().map(|r| r.subscribers.len()).sum();
                let _ = reply.send(stats);
            }
        }
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

    fn open_publisher(
        &mut self,
        now: Instant,
        room: i64,
        user: i64,
        offer: String,
        record: bool,
    ) -> Result<Answer, ApiError> {
        if !Self::has_media(&offer) {
            return Err(invalid_sdp("没有音频或视频"));
        }
        if let Some(existing) = self.rooms.get(&room).and_then(|r| r.publisher) {
            // The same person publishing again (a reload, OBS restarting) replaces the old
            // session; anyone else has to wait.
            if self.peers.get(&existing).is_some_and(|p| p.user == user) {
                self.remove(existing, "replaced by a new session of the same user");
            } else {
                return Err(ApiError::new(ErrorCode::AlreadyPublishing));
            }
        }
        let (credentials, mut pc) = fresh_connection(now, PeerKind::Publisher)?;
        let sdp = self.negotiate(now, &mut pc, offer)?;
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
            Role::Publisher {
                tracks: Vec::new(),
                keyframes: KeyframeGate::new(KEYFRAME_INTERVAL),
                recorder,
                video_history: RetransmitBuffer::new(),
            },
        );
        self.rooms.entry(room).or_default().publisher = Some(id);
        let session = self.peers[&id].session.clone();
        tracing::info!(
            room,
            user,
            recording = recording.is_some(),
            "publisher offered"
        );
        Ok(Answer {
            session,
            sdp,
            recording,
        })
    }

    fn open_subscriber(
        &mut self,
        now: Instant,
        room: i64,
        user: i64,
        offer: String,
    ) -> Result<Answer, ApiError> {
        if !Self::has_media(&offer) {
            return Err(invalid_sdp("没有音频或视频"));
        }
        let tracks: Vec<Track> = self
            .rooms
            .get(&room)
            .and_then(|r| r.publisher)
            .and_then(|id| self.peers.get(&id))
            .map(|p| match &p.role {
                Role::Publisher { tracks, .. } => tracks.clone(),
                Role::Subscriber { .. } => Vec::new(),
            })
            .unwrap_or_default();
        if tracks.is_empty() {
            return Err(ApiError::new(ErrorCode::NotPublishing));
        }
        let (credentials, mut pc) = fresh_connection(now, PeerKind::Subscriber)?;
        let mut outgoing = Vec::new();
        for track in &tracks {
            let ssrc = rand::random::<u32>();
            let name = format!("{}-{room}", kind_name(track.kind));
            let local = MediaStreamTrack::new(
                format!("livecamp-{room}"),
                name.clone(),
                name,
                track.kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: track.codec.clone(),
                    ..Default::default()
                }],
            );
            let sender = pc.add_track(local).map_err(|e| {
                tracing::error!(error = %e, "adding a track");
                unavailable()
            })?;
            outgoing.push(Outgoing {
                kind: track.kind,
                sender,
                ssrc,
                payload_type: 0,
            });
        }
        let sdp = self.negotiate(now, &mut pc, offer)?;
        // The payload type this subscriber negotiated for the publisher's codec; a track whose
        // codec the subscriber cannot take is not sent.
        outgoing.retain_mut(|out| {
            let Some(track) = tracks.iter().find(|t| t.kind == out.kind) else {
                return false;
            };
            let Some(mut sender) = pc.rtp_sender(out.sender) else {
                return false;
            };
            let codecs = &sender.get_parameters().rtp_parameters.codecs;
            let found = codecs
                .iter()
                .find(|c| {
                    c.rtp_codec
                        .mime_type
                        .eq_ignore_ascii_case(&track.codec.mime_type)
                        && c.rtp_codec.sdp_fmtp_line == track.codec.sdp_fmtp_line
                })
                .or_else(|| {
                    codecs.iter().find(|c| {
                        c.rtp_codec
                            .mime_type
                            .eq_ignore_ascii_case(&track.codec.mime_type)
                    })
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
            Role::Subscriber { outgoing },
        );
        self.rooms.entry(room).or_default().subscribers.push(id);
        let session = self.peers[&id].session.clone();
        tracing::debug!(room, user, "subscriber offered");
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

    /// Takes a peer out of every index, closes its connection and, for a publisher, its room's
    /// subscribers too (they are told through the hub and play again when a publisher is back).
    fn remove(&mut self, id: PeerId, why: &str) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        if let Role::Publisher { recorder, .. } = &mut peer.role
            && let Some(recorder) = recorder.take()
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
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            room.subscribers.retain(|s| *s != id);
            if room.publisher == Some(id) {
                room.publisher = None;
                orphans = std::mem::take(&mut room.subscribers);
                let _ = self.events.send(MediaEvent::Stopped { room: peer.room });
            }
            if room.publisher.is_none() && room.subscribers.is_empty() {
                self.rooms.remove(&peer.room);
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
        let room = peer.room;
        self.flush_writes(id);
        for event in events {
            self.event(now, id, event);
        }
        if !media.is_empty() {
            self.forward(now, id, media);
        }
        if wants_keyframe {
            self.request_keyframe(now, room);
        }
        if !nacked.is_empty() {
            self.retransmit(now, id, room, &nacked);
        }
    }

    /// Answers a subscriber's NACKs from its publisher's retransmission buffer.
    fn retransmit(&mut self, now: Instant, subscriber: PeerId, room: i64, nacked: &[(u32, u16)]) {
        let Some(publisher) = self.rooms.get(&room).and_then(|r| r.publisher) else {
            return;
        };
        let mut copies = Vec::with_capacity(nacked.len());
        if let Some(Peer {
            role: Role::Publisher { video_history, .. },
            ..
        }) = self.peers.get(&publisher)
        {
            for &(ssrc, seq) in nacked {
                if let Some(packet) = video_history.get(seq) {
                    copies.push((ssrc, packet.clone()));
                }
            }
        }
        let Some(Peer {
            pc,
            role: Role::Subscriber { outgoing },
            ..
        }) = self.peers.get_mut(&subscriber)
        else {
            return;
        };
        for (ssrc, mut packet) in copies {
            let Some(out) = outgoing
                .iter()
                .find(|o| o.ssrc == ssrc && o.kind == RtpCodecKind::Video)
            else {
                continue;
            };
            packet.header.ssrc = out.ssrc;
            packet.header.payload_type = out.payload_type;
            if let Some(mut sender) = pc.rtp_sender(out.sender)
                && sender.write_rtp(now, packet).is_ok()
            {
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
                    let room = peer.room;
                    tracing::debug!(room, user = peer.user, "media connected");
                    if matches!(peer.role, Role::Subscriber { .. }) {
                        // A new viewer needs a keyframe to start decoding.
                        self.request_keyframe(now, room);
                    }
                }
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    self.remove(id, "connection failed or closed");
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                self.track_opened(now, id, init.receiver_id, init.track_id, init.ssrc);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) => {
                if let Some(Peer {
                    role: Role::Publisher { tracks, .. },
                    ..
                }) = self.peers.get_mut(&id)
                {
                    tracks.retain(|t| t.id != track_id);
                }
            }
            _ => {}
        }
    }

    fn track_opened(
        &mut self,
        _now: Instant,
        id: PeerId,
        receiver: RTCRtpReceiverId,
        track_id: String,
        ssrc: u32,
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
        let Role::Publisher {
            tracks, recorder, ..
        } = &mut peer.role
        else {
            return;
        };
        // Simulcast layers open one by one on the same track; the first one of a kind is used.
        if tracks.iter().any(|t| t.kind == kind) {
            return;
        }
        if let Some(recorder) = recorder {
            recorder.codec(record_kind(kind), &codec.mime_type, codec.clock_rate);
        }
        tracing::info!(room, user, kind = kind_name(kind), codec = %codec.mime_type, "publishing");
        tracks.push(Track {
            id: track_id,
            receiver,
            kind,
            ssrc,
            codec,
        });
        let infos = tracks
            .iter()
            .map(|t| TrackInfo {
                kind: kind_name(t.kind),
                codec: t.codec.mime_type.clone(),
            })
            .collect();
        // No keyframe request here: an encoder starts with one, and a request now would hold
        // the next subscriber's for up to a second.
        let _ = self.events.send(MediaEvent::Publishing {
            room,
            user,
            tracks: infos,
        });
    }

    /// Forwards a publisher's packets to the room's connected subscribers.
    fn forward(&mut self, now: Instant, publisher: PeerId, media: Vec<(String, rtp::Packet)>) {
        let Some(Peer {
            room,
            role:
                Role::Publisher {
                    tracks,
                    recorder,
                    video_history,
                    ..
                },
            ..
        }) = self.peers.get_mut(&publisher)
        else {
            return;
        };
        let room = *room;
        let mut packets: Vec<(RtpCodecKind, rtp::Packet)> = Vec::with_capacity(media.len());
        for (track_id, mut packet) in media {
            let Some(track) = tracks.iter().find(|t| t.id == track_id) else {
                continue;
            };
            if packet.header.ssrc != track.ssrc {
                continue; // another simulcast layer
            }
            if let Some(recorder) = recorder {
                recorder.packet(now, record_kind(track.kind), &packet);
            }
            // Each subscriber negotiated its own extension ids: send none.
            packet.header.extension = false;
            packet.header.extensions.clear();
            packet.header.extension_profile = 0;
            packet.header.extensions_padding = 0;
            if track.kind == RtpCodecKind::Video {
                video_history.push(&packet);
            }
            packets.push((track.kind, packet));
        }
        self.stats.received_rtp += packets.len() as u64;
        let Some(room_media) = self.rooms.get(&room) else {
            return;
        };
        for &subscriber in &room_media.subscribers {
            let Some(peer) = self.peers.get_mut(&subscriber) else {
                continue;
            };
            if !peer.connected {
                continue;
            }
            let Role::Subscriber { outgoing } = &peer.role else {
                continue;
            };
            for (kind, packet) in &packets {
                let Some(out) = outgoing.iter().find(|o| o.kind == *kind) else {
                    continue;
                };
                let mut copy = packet.clone();
                copy.header.ssrc = out.ssrc;
                copy.header.payload_type = out.payload_type;
                let sender = out.sender;
                if let Some(mut sender) = peer.pc.rtp_sender(sender) {
                    match sender.write_rtp(now, copy) {
                        Ok(()) => self.stats.forwarded_rtp += 1,
                        Err(e) => tracing::trace!(error = %e, "forwarding"),
                    }
                }
            }
            while let Some(datagram) = peer.pc.poll_write() {
                self.out
                    .push((datagram.transport.peer_addr, datagram.message));
            }
            peer.deadline = peer.pc.poll_timeout();
        }
    }

    /// Asks the room's publisher for a keyframe, at most once per second.
    fn request_keyframe(&mut self, now: Instant, room: i64) {
        let Some(publisher) = self.rooms.get(&room).and_then(|r| r.publisher) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Role::Publisher {
            tracks, keyframes, ..
        } = &mut peer.role
        else {
            return;
        };
        if keyframes.request(now) {
            Self::send_pli(&mut peer.pc, now, tracks);
            self.stats.keyframe_requests += 1;
            self.flush_writes(publisher);
        }
    }

    /// Asks a publisher for a keyframe on each of its video tracks.
    fn send_pli(pc: &mut RTCPeerConnection, now: Instant, tracks: &[Track]) {
        for track in tracks.iter().filter(|t| t.kind == RtpCodecKind::Video) {
            if let Some(mut receiver) = pc.rtp_receiver(track.receiver) {
                let _ = receiver.write_rtcp(
                    now,
                    vec![Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc: track.ssrc,
                    })],
                );
            }
        }
    }

    /// Runs due timers, sends kept keyframe requests, drops connections that never connected.
    fn timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        let mut stale = Vec::new();
        let mut keyframes_due = Vec::new();
        for (&id, peer) in &mut self.peers {
            if peer.deadline.is_some_and(|d| d <= now) {
                due.push(id);
            }
            if !peer.connected && now.duration_since(peer.created) > self.config.connect_timeout {
                stale.push(id);
            }
            if let Role::Publisher { keyframes, .. } = &mut peer.role
                && keyframes.poll(now)
            {
                keyframes_due.push(id);
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
                && let Role::Publisher { tracks, .. } = &peer.role
            {
                Self::send_pli(&mut peer.pc, now, tracks);
                self.stats.keyframe_requests += 1;
            }
            self.flush_writes(id);
        }
        for id in stale {
            self.remove(id, "never connected");
        }
    }
}
