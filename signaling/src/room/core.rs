//! The state machine of one room, sans IO: feed it [`Input`]s with the current time, drain the
//! [`Output`]s. It never reads a clock, touches a socket or the database; the room task around it
//! (`room::task`) does that. Every rule of the room lives here and is tested in virtual time.
//!
//! Rules: events get consecutive sequence numbers and are kept in a bounded history for resuming
//! clients; chat is rate-limited per user, length-limited and filtered; muted users cannot chat;
//! only moderators (host, class instructors) moderate and only the host starts and ends the live;
//! likes are summed exactly and reported at most every `stats_interval_ms`.
//!
//! Besides the room's counters (peak and likes over all its lives, sent to clients), the room
//! keeps those of each live session — its peak, the likes taken while it runs, and each
//! viewer's watch time — keyed by the session's `started_at` (the time of its `live_started`
//! event, the same on every node), and hands them out as increments for storage
//! ([`RoomCore::take_totals`], [`RoomCore::drain_watch`]), so the dashboard and the report of a
//! live show only that live.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use crate::protocol::{
    ChatMessage, ClientMsg, MemberRole, Priority, RoomEvent, RoomId, RoomMedia, RoomSnapshot, Seq,
    ServerMsg, UserId, UserRef,
};
use crate::words::{Filtered, WordFilter};

/// A connection's id, unique within the process.
pub type ConnId = u64;

/// Tunables of a room.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Events kept for resuming clients.
    pub history: usize,
    /// Chat messages in a snapshot.
    pub recent_chat: usize,
    /// Longest chat message, in characters.
    pub max_chat_chars: usize,
    /// Chat burst per user, and the refill interval of one message.
    pub chat_burst: u32,
    pub chat_refill_ms: i64,
    /// Counters are reported at most this often …
    pub stats_interval_ms: i64,
    /// … and less often in big rooms: every report is one delivery to each connection here, so
    /// the interval grows to keep reports under this many deliveries per second (a join storm
    /// would otherwise cost connections² deliveries) …
    pub stats_deliveries_per_second: i64,
    /// … up to this interval.
    pub max_stats_interval_ms: i64,
    /// Rooms with at most this many people get member lists and join/leave events.
    pub presence_limit: usize,
    /// Most likes one `like` frame may carry.
    pub max_like_batch: u32,
    /// Most events replayed to a resuming client; beyond that it gets a snapshot (a replay must
    /// fit in the connection's queue of undroppable frames).
    pub max_replay: usize,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            history: 2048,
            recent_chat: 20,
            max_chat_chars: 200,
            chat_burst: 3,
            chat_refill_ms: 1000,
            stats_interval_ms: 250,
            stats_deliveries_per_second: 10_000,
            max_stats_interval_ms: 2_000,
            presence_limit: 200,
            max_like_batch: 500,
            max_replay: 256,
        }
    }
}

/// A sequenced event, encoded once for every receiver.
#[derive(Debug)]
pub struct Sequenced {
    pub seq: Seq,
    pub at: i64,
    pub event: RoomEvent,
    pub priority: Priority,
    /// Who caused it (their own chat is never sampled away from them).
    pub author: Option<UserId>,
    /// The `ServerMsg::Event` frame, serialised once.
    pub wire: Utf8Bytes,
}

/// Inputs to the room.
#[derive(Debug, Clone)]
pub enum Input {
    /// An authorised connection enters (the task has checked class membership).
    Join {
        conn: ConnId,
        user: UserRef,
        role: MemberRole,
        last_seq: Option<Seq>,
        id: Option<u32>,
    },
    Leave {
        conn: ConnId,
    },
    /// Any other client message for this room.
    Client {
        conn: ConnId,
        id: Option<u32>,
        msg: ClientMsg,
    },
    /// Everyone publishing now (from the media endpoint), main first.
    Media(Vec<RoomMedia>),
    /// An event another part of the node announces (commerce, teaching): numbered and
    /// delivered like any other, never dropped.
    Announce(RoomEvent),
    /// Time passes (drives stats).
    Tick,
}

/// What the room wants done.
#[derive(Debug, Clone)]
pub enum Output {
    /// Deliver to every connection in the room (chat-class events may be sampled per viewer).
    Broadcast(Arc<Sequenced>),
    /// Deliver one message to one connection.
    Send { conn: ConnId, msg: ServerMsg },
    /// Deliver stored events, in order, to one resuming connection.
    Replay {
        conn: ConnId,
        events: Vec<Arc<Sequenced>>,
    },
    /// The counters changed; the frame is encoded once.
    Stats(Utf8Bytes),
    /// Store a chat message (for the post-live report).
    StoreChat(ChatMessage),
    /// Mark a stored chat message removed.
    StoreRemoval { message: Seq },
    /// The live started or ended (at `at`, the event's time: a started live's session key);
    /// persist the room status and totals. Only on the node that decided it.
    LiveChanged {
        live: bool,
        at: i64,
        peak: u32,
        likes: u64,
    },
    /// The live session that began at `started_at` ended on this replica: store its totals
    /// ([`RoomCore::take_totals`]) and watch time ([`RoomCore::drain_watch`]) now, on every node,
    /// so that its report finds them. Comes before the `LiveChanged` of the same end.
    SessionEnded { started_at: i64 },
    /// (Distributed) an event to be numbered by the cluster's sequencer.
    Propose(Proposal),
}

/// An event decided on this node, waiting for its cluster-wide seq.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    pub at: i64,
    pub event: RoomEvent,
    pub author: Option<UserId>,
}

/// A live session's numbers taken on this replica and not yet stored: the likes taken here
/// while it ran (an increment) and its peak as seen here (stored as a maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTotals {
    /// The session: the time of its `live_started` event.
    pub started_at: i64,
    pub likes: u64,
    pub peak: u32,
}

/// What the room task stores ([`RoomCore::take_totals`]): the likes taken here since the last
/// save (added to the room's total), the room's peak, and the sessions' numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub likes: u64,
    pub peak: u32,
    pub sessions: Vec<SessionTotals>,
}

/// The current (or last) live session, as this replica sees it, for the dashboard.
#[derive(Debug, Clone, Copy)]
struct Session {
    started_at: i64,
    /// Highest viewer count while it ran.
    peak: u32,
    /// The room's like total when it began here: while live, the session's likes are the
    /// room's total minus this (with several nodes an estimate at the edges; the stored
    /// increments are exact).
    likes_base: u64,
    /// The session's likes when it ended here.
    likes_final: Option<u64>,
}

/// Who numbers events: this room alone (one node), or the cluster (several nodes share the
/// room; every node applies the same numbered events in the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequencing {
    Local,
    External,
}

/// `ServerMsg::Event` by reference, so an event is serialised without being cloned; the test
/// `event_frames_match_the_protocol` keeps it identical to the protocol type.
#[derive(serde::Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: RoomId,
    seq: Seq,
    at: i64,
    event: &'a RoomEvent,
}

fn encode_event(room: RoomId, seq: Seq, at: i64, event: &RoomEvent) -> Utf8Bytes {
    let frame = EventFrame {
        kind: "event",
        room,
        seq,
        at,
        event,
    };
    // Serialising our own protocol types into a String cannot fail.
    Utf8Bytes::from(serde_json::to_string(&frame).unwrap_or_default())
}

#[derive(Debug, Clone)]
struct Member {
    user: UserRef,
    role: MemberRole,
}

/// One person's connections in the room, and since when their watch time is counted.
#[derive(Debug, Clone, Copy)]
struct Presence {
    conns: u32,
    since: i64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: i64,
}

/// Room state.
#[derive(Debug)]
pub struct RoomCore {
    id: RoomId,
    config: RoomConfig,
    words: Arc<WordFilter>,
    host: Option<UserRef>,
    live: bool,
    seq: Seq,
    history: VecDeque<Arc<Sequenced>>,
    recent_chat: VecDeque<ChatMessage>,
    pinned: Option<ChatMessage>,
    /// Everyone publishing, main first.
    media: Vec<RoomMedia>,
    conns: HashMap<ConnId, Member>,
    /// Connections per user: a person in two tabs counts once.
    users: HashMap<UserId, Presence>,
    /// Watch time accrued while live and not yet drained (per session and user, ms), for the
    /// dashboard.
    watched: HashMap<(i64, UserId), i64>,
    peak: u32,
    likes: u64,
    /// The current (or last) live session.
    session: Option<Session>,
    /// Per session, what is not stored yet (see [`SessionTotals`]).
    unsaved_sessions: Vec<SessionTotals>,
    /// Likes taken here and not yet added to the room's stored total.
    unsaved_likes: u64,
    /// The room peak last handed out for storage (or loaded).
    peak_stored: u32,
    muted: HashMap<UserId, i64>,
    buckets: HashMap<UserId, Bucket>,
    stats_dirty: bool,
    last_stats_at: i64,
    sequencing: Sequencing,
    /// (Distributed) likes taken here, likes already added to the cluster counter, the
    /// cluster total last seen, and the viewers summed over every node.
    likes_here: u64,
    likes_flushed: u64,
    cluster_likes: u64,
    cluster_viewers: Option<u32>,
    /// Numbered events on its own while the cluster was unreachable.
    diverged: bool,
    /// Resuming needs a `last_seq` at least this high (raised when the numbering was rebased).
    resume_floor: Seq,
    outputs: VecDeque<Output>,
}

impl RoomCore {
    /// A room; `host` is who may start and end the live; `likes` and `peak` continue from the
    /// stored totals.
    ///
    /// `start_seq` must exceed every seq an earlier incarnation of this room handed out, so that
    /// a client resuming across a restart is resynced rather than replayed the wrong events; the
    /// task passes the load time in milliseconds × 1000 (room events never average 1000 per ms,
    /// and the product stays below 2^53 for JavaScript clients).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: RoomId,
        start_seq: Seq,
        host: Option<UserRef>,
        live: bool,
        likes: u64,
        peak: u32,
        config: RoomConfig,
        words: Arc<WordFilter>,
    ) -> Self {
        Self {
            id,
            config,
            words,
            host,
            live,
            seq: start_seq,
            history: VecDeque::new(),
            recent_chat: VecDeque::new(),
            pinned: None,
            media: Vec::new(),
            conns: HashMap::new(),
            users: HashMap::new(),
            watched: HashMap::new(),
            peak,
            likes,
            session: None,
            unsaved_sessions: Vec::new(),
            unsaved_likes: 0,
            peak_stored: peak,
            muted: HashMap::new(),
            buckets: HashMap::new(),
            stats_dirty: false,
            last_stats_at: i64::MIN / 2,
            sequencing: Sequencing::Local,
            likes_here: 0,
            likes_flushed: 0,
            cluster_likes: likes,
            cluster_viewers: None,
            diverged: false,
            resume_floor: 0,
            outputs: VecDeque::new(),
        }
    }

    /// A room loaded while live continues its session: the one that began at `started_at`,
    /// with its stored `peak` and `likes`. (Call after [`RoomCore::new`] with `live`.)
    pub fn resume_session(mut self, started_at: i64, peak: u32, likes: u64) -> Self {
        self.session = Some(Session {
            started_at,
            peak,
            likes_base: self.likes.saturating_sub(likes),
            likes_final: None,
        });
        self
    }

    /// Hands numbering to the cluster (see [`Sequencing`]).
    pub fn with_sequencing(mut self, sequencing: Sequencing) -> Self {
        self.sequencing = sequencing;
        self
    }

    pub fn set_words(&mut self, words: Arc<WordFilter>) {
        self.words = words;
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// People present apart from the host (over every node, when the room spans several).
    pub fn viewers(&self) -> u32 {
        self.cluster_viewers
            .map_or_else(|| self.local_viewers(), |c| c.max(self.local_viewers()))
    }

    /// People present on this node apart from the host.
    pub fn local_viewers(&self) -> u32 {
        let host = self.host.as_ref().map(|h| h.id);
        let count = self.users.keys().filter(|u| Some(**u) != host).count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// (Distributed) the viewers summed over every node.
    pub fn set_cluster_viewers(&mut self, viewers: u32) {
        if self.cluster_viewers != Some(viewers) {
            self.cluster_viewers = Some(viewers);
            self.raise_peak();
            self.stats_dirty = true;
        }
    }

    /// (Distributed) likes taken here and not yet added to the cluster counter.
    pub fn unflushed_likes(&self) -> u64 {
        self.likes_here - self.likes_flushed
    }

    /// (Distributed) `delta` likes were added to the cluster counter, which is now `total`.
    pub fn likes_flushed(&mut self, delta: u64, total: u64) {
        self.likes_flushed += delta;
        self.cluster_likes_total(total);
    }

    /// (Distributed) the cluster's like counter, as announced; totals only grow.
    pub fn cluster_likes_total(&mut self, total: u64) {
        self.cluster_likes = self.cluster_likes.max(total);
        let likes = self.cluster_likes + self.unflushed_likes();
        if likes != self.likes {
            self.likes = likes;
            self.stats_dirty = true;
        }
    }

    pub fn likes(&self) -> u64 {
        self.likes
    }

    pub fn peak(&self) -> u32 {
        self.peak
    }

    /// The current (or last) live session's start, if this replica knows one.
    pub fn session_started_at(&self) -> Option<i64> {
        self.session.map(|s| s.started_at)
    }

    /// The current (or last) live session's peak as seen here (0 without one).
    pub fn session_peak(&self) -> u32 {
        self.session.map_or(0, |s| s.peak)
    }

    /// The current (or last) live session's likes as seen here (0 without one).
    pub fn session_likes(&self) -> u64 {
        self.session.map_or(0, |s| {
            s.likes_final
                .unwrap_or_else(|| self.likes.saturating_sub(s.likes_base))
        })
    }

    /// Raises the room's peak, and the session's while live, to the viewers now.
    fn raise_peak(&mut self) {
        let viewers = self.viewers();
        self.peak = self.peak.max(viewers);
        if !self.live {
            return;
        }
        if let Some(session) = self.session.as_mut()
            && viewers > session.peak
        {
            session.peak = viewers;
            let started_at = session.started_at;
            self.tally(started_at).peak = viewers;
        }
    }

    /// The unsaved numbers of the session that began at `started_at`.
    fn tally(&mut self, started_at: i64) -> &mut SessionTotals {
        let index = match self
            .unsaved_sessions
            .iter()
            .position(|t| t.started_at == started_at)
        {
            Some(index) => index,
            None => {
                self.unsaved_sessions.push(SessionTotals {
                    started_at,
                    likes: 0,
                    peak: 0,
                });
                self.unsaved_sessions.len() - 1
            }
        };
        &mut self.unsaved_sessions[index]
    }

    /// What to store since the last call (`None`: nothing changed): the likes taken here (an
    /// increment of the room's total), the room's peak, and per session the likes taken here
    /// while it ran and its peak. Every 10 s, at the end of a live and when the room unloads;
    /// if storing fails, hand it back with [`RoomCore::restore_totals`] so nothing is lost.
    pub fn take_totals(&mut self) -> Option<Totals> {
        if self.unsaved_likes == 0
            && self.unsaved_sessions.is_empty()
            && self.peak <= self.peak_stored
        {
            return None;
        }
        self.peak_stored = self.peak;
        Some(Totals {
            likes: std::mem::take(&mut self.unsaved_likes),
            peak: self.peak,
            sessions: std::mem::take(&mut self.unsaved_sessions),
        })
    }

    /// Totals from [`RoomCore::take_totals`] that could not be stored: kept for the next save.
    pub fn restore_totals(&mut self, totals: Totals) {
        self.unsaved_likes += totals.likes;
        // The room's peak is handed out again next time.
        self.peak_stored = 0;
        for session in totals.sessions {
            let tally = self.tally(session.started_at);
            tally.likes += session.likes;
            tally.peak = tally.peak.max(session.peak);
        }
    }

    pub fn handle(&mut self, now: i64, input: Input) {
        match input {
            Input::Join {
                conn,
                user,
                role,
                last_seq,
                id: _,
            } => self.join(now, conn, user, role, last_seq),
            Input::Leave { conn } => self.leave(now, conn),
            Input::Client { conn, id, msg } => self.client(now, conn, id, msg),
            Input::Media(publishers) => {
                if publishers != self.media {
                    let media = main_publisher(&publishers);
                    self.emit(now, RoomEvent::MediaChanged { media, publishers }, None);
                }
            }
            Input::Announce(event) => self.emit(now, event, None),
            Input::Tick => {}
        }
        self.maybe_stats(now);
    }

    fn snapshot(&self) -> RoomSnapshot {
        let small = self.conns.len() <= self.config.presence_limit;
        RoomSnapshot {
            live: self.live,
            seq: self.seq,
            viewers: self.viewers(),
            peak: self.peak,
            likes: self.likes,
            host: self.host.clone(),
            pinned: self.pinned.clone(),
            recent_chat: self.recent_chat.iter().cloned().collect(),
            media: main_publisher(&self.media),
            publishers: self.media.clone(),
            members: small.then(|| {
                let mut seen = std::collections::HashSet::new();
                self.conns
                    .values()
                    .filter(|m| seen.insert(m.user.id))
                    .map(|m| m.user.clone())
                    .collect()
            }),
        }
    }

    fn join(
        &mut self,
        now: i64,
        conn: ConnId,
        user: UserRef,
        role: MemberRole,
        last_seq: Option<Seq>,
    ) {
        let first_connection_of_user = !self.users.contains_key(&user.id);
        if self
            .conns
            .insert(
                conn,
                Member {
                    user: user.clone(),
                    role,
                },
            )
            .is_none()
        {
            self.users
                .entry(user.id)
                .or_insert(Presence {
                    conns: 0,
                    since: now,
                })
                .conns += 1;
        }
        self.raise_peak();
        self.stats_dirty = true;
        let room = self.id;
        match last_seq {
            Some(last) if last <= self.seq && self.can_resume_after(last) => {
                self.outputs.push_back(Output::Send {
                    conn,
                    msg: ServerMsg::Resumed {
                        room,
                        role,
                        from_seq: last,
                    },
                });
                let events: Vec<_> = self
                    .history
                    .iter()
                    .filter(|e| e.seq > last)
                    .cloned()
                    .collect();
                if !events.is_empty() {
                    self.outputs.push_back(Output::Replay { conn, events });
                }
            }
            Some(_) => self.outputs.push_back(Output::Send {
                conn,
                msg: ServerMsg::Resync {
                    room,
                    role,
                    state: self.snapshot(),
                },
            }),
            None => self.outputs.push_back(Output::Send {
                conn,
                msg: ServerMsg::Joined {
                    room,
                    role,
                    state: self.snapshot(),
                },
            }),
        }
        if first_connection_of_user && self.conns.len() <= self.config.presence_limit {
            self.emit(
                now,
                RoomEvent::MemberJoined {
                    user: user.clone(),
                    role,
                },
                Some(user.id),
            );
        }
    }

    /// Everything after `last` is still in the history, and not too much of it.
    fn can_resume_after(&self, last: Seq) -> bool {
        let missed = self
            .history
            .iter()
            .rev()
            .take_while(|e| e.seq > last)
            .count();
        let complete = match self.history.front() {
            Some(oldest) => oldest.seq <= last + 1,
            None => last == self.seq,
        };
        complete && missed <= self.config.max_replay && last >= self.resume_floor
    }

    fn leave(&mut self, now: i64, conn: ConnId) {
        let Some(member) = self.conns.remove(&conn) else {
            return;
        };
        self.stats_dirty = true;
        let gone = match self.users.get_mut(&member.user.id) {
            Some(p) if p.conns > 1 => {
                p.conns -= 1;
                false
            }
            _ => {
                if let Some(p) = self.users.remove(&member.user.id)
                    && self.live
                    && let Some(started_at) = self.session_started_at()
                {
                    *self
                        .watched
                        .entry((started_at, member.user.id))
                        .or_default() += (now - p.since).max(0);
                }
                true
            }
        };
        if gone && self.conns.len() < self.config.presence_limit {
            self.emit(
                now,
                RoomEvent::MemberLeft {
                    user: member.user.clone(),
                },
                Some(member.user.id),
            );
        }
    }

    fn error(&mut self, conn: ConnId, id: Option<u32>, code: &str, message: &str) {
        self.outputs.push_back(Output::Send {
            conn,
            msg: ServerMsg::Error {
                id,
                code: code.to_owned(),
                message: message.to_owned(),
            },
        });
    }

    fn ack(&mut self, conn: ConnId, id: Option<u32>) {
        if let Some(id) = id {
            self.outputs.push_back(Output::Send {
                conn,
                msg: ServerMsg::Ack { id },
            });
        }
    }

    fn client(&mut self, now: i64, conn: ConnId, id: Option<u32>, msg: ClientMsg) {
        let Some(member) = self.conns.get(&conn).cloned() else {
            self.error(conn, id, "not_in_room", "请先进入直播间");
            return;
        };
        match msg {
            ClientMsg::Chat { text, .. } => self.chat(now, conn, id, &member, &text),
            ClientMsg::Like { count, .. } => {
                if count == 0 || count > self.config.max_like_batch {
                    let message = format!("点赞数须在 1–{} 之间", self.config.max_like_batch);
                    self.error(conn, id, "invalid", &message);
                    return;
                }
                self.likes += u64::from(count);
                self.likes_here += u64::from(count);
                self.unsaved_likes += u64::from(count);
                // Likes count for the session only while it runs here.
                if self.live
                    && let Some(started_at) = self.session_started_at()
                {
                    self.tally(started_at).likes += u64::from(count);
                }
                self.stats_dirty = true;
                self.ack(conn, id);
            }
            ClientMsg::StartLive { .. } => {
                if member.role != MemberRole::Host {
                    return self.error(conn, id, "forbidden", "只有主播可以开始直播");
                }
                if self.live {
                    return self.error(conn, id, "already_live", "直播已经开始");
                }
                self.emit(
                    now,
                    RoomEvent::LiveStarted {
                        host: member.user.clone(),
                    },
                    Some(member.user.id),
                );
                self.ack(conn, id);
            }
            ClientMsg::EndLive { .. } => {
                if member.role != MemberRole::Host {
                    return self.error(conn, id, "forbidden", "只有主播可以结束直播");
                }
                if !self.live {
                    return self.error(conn, id, "not_live", "直播尚未开始");
                }
                self.emit(
                    now,
                    RoomEvent::LiveEnded {
                        peak: self.peak,
                        likes: self.likes,
                    },
                    Some(member.user.id),
                );
                self.ack(conn, id);
            }
            ClientMsg::Mute { user, minutes, .. } => {
                if !member.role.moderates() {
                    return self.error(conn, id, "forbidden", "只有主播或讲师可以禁言");
                }
                if !(1..=1440).contains(&minutes) {
                    return self.error(conn, id, "invalid", "禁言时长须在 1–1440 分钟之间");
                }
                let target_moderates = self
                    .conns
                    .values()
                    .any(|m| m.user.id == user && m.role.moderates())
                    || self.host.as_ref().is_some_and(|h| h.id == user);
                if target_moderates {
                    return self.error(conn, id, "forbidden", "不能禁言主播或讲师");
                }
                let until = now + i64::from(minutes) * 60_000;

                self.emit(
                    now,
                    RoomEvent::UserMuted { user, until },
                    Some(member.user.id),
                );
                self.ack(conn, id);
            }
            ClientMsg::Unmute { user, .. } => {
                if !member.role.moderates() {
                    return self.error(conn, id, "forbidden", "只有主播或讲师可以解除禁言");
                }
                if self.muted.contains_key(&user) {
                    self.emit(now, RoomEvent::UserUnmuted { user }, Some(member.user.id));
                }
                self.ack(conn, id);
            }
            ClientMsg::RemoveMessage { message, .. } => {
                if !member.role.moderates() {
                    return self.error(conn, id, "forbidden", "只有主播或讲师可以删除消息");
                }
                if !self.is_known_chat(message) {
                    return self.error(conn, id, "not_found", "消息不存在或已过期");
                }

                self.emit(
                    now,
                    RoomEvent::MessageRemoved {
                        message,
                        by: member.user.clone(),
                    },
                    Some(member.user.id),
                );
                self.ack(conn, id);
            }
            ClientMsg::PinMessage { message, .. } => {
                if !member.role.moderates() {
                    return self.error(conn, id, "forbidden", "只有主播或讲师可以置顶消息");
                }
                let Some(chat) = self.recent_chat.iter().find(|m| m.id == message).cloned() else {
                    return self.error(conn, id, "not_found", "只能置顶最近的消息");
                };

                self.emit(
                    now,
                    RoomEvent::MessagePinned { message: chat },
                    Some(member.user.id),
                );
                self.ack(conn, id);
            }
            ClientMsg::UnpinMessage { .. } => {
                if !member.role.moderates() {
                    return self.error(conn, id, "forbidden", "只有主播或讲师可以取消置顶");
                }
                if self.pinned.is_some() {
                    self.emit(now, RoomEvent::MessageUnpinned, Some(member.user.id));
                }
                self.ack(conn, id);
            }
            ClientMsg::Join { .. } | ClientMsg::Leave { .. } | ClientMsg::Ping => {}
        }
    }

    fn is_known_chat(&self, seq: Seq) -> bool {
        self.history
            .iter()
            .any(|e| e.seq == seq && matches!(e.event, RoomEvent::Chat { .. }))
    }

    fn chat(&mut self, now: i64, conn: ConnId, id: Option<u32>, member: &Member, text: &str) {
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        let text = text.trim();
        let chars = text.chars().count();
        if chars == 0 {
            return self.error(conn, id, "empty_text", "消息不能为空");
        }
        if chars > self.config.max_chat_chars {
            let message = format!("消息不能超过 {} 个字", self.config.max_chat_chars);
            return self.error(conn, id, "text_too_long", &message);
        }
        let user = member.user.id;
        if let Some(until) = self.muted.get(&user).copied() {
            if until > now {
                let minutes = (until - now + 59_999) / 60_000;
                return self.error(
                    conn,
                    id,
                    "muted",
                    &format!("你已被禁言，{minutes} 分钟后可再发言"),
                );
            }
            self.muted.remove(&user);
        }
        if !member.role.moderates() && !self.take_chat_token(now, user) {
            return self.error(conn, id, "rate_limited", "发言太快了，请稍后再试");
        }
        let text = match self.words.check(text) {
            Filtered::Clean => text.to_owned(),
            Filtered::Masked(masked) => masked,
            Filtered::Blocked => {
                return self.error(conn, id, "word_blocked", "消息包含违规内容，未能发送");
            }
        };
        // The id is the event's seq, set when the message is sequenced.
        let message = ChatMessage {
            id: 0,
            user: member.user.clone(),
            role: member.role,
            text,
            at: now,
        };
        self.emit(now, RoomEvent::Chat { message }, Some(user));
        self.ack(conn, id);
    }

    fn take_chat_token(&mut self, now: i64, user: UserId) -> bool {
        let burst = f64::from(self.config.chat_burst);
        let refill = self.config.chat_refill_ms.max(1) as f64;
        let bucket = self.buckets.entry(user).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = (now - bucket.updated).max(0) as f64;
        bucket.tokens = (bucket.tokens + elapsed / refill).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A decided event: sequenced here (embedded) or proposed to the cluster's sequencer, which
    /// hands it back to every node's room through [`RoomCore::apply_sequenced`].
    fn emit(&mut self, now: i64, event: RoomEvent, author: Option<UserId>) {
        match self.sequencing {
            Sequencing::Local => self.apply(self.seq + 1, now, event, author, true),
            Sequencing::External => {
                self.outputs.push_back(Output::Propose(Proposal {
                    at: now,
                    event,
                    author,
                }));
            }
        }
    }

    /// A sequenced event from the cluster; `origin_here` when this node proposed it (it then
    /// stores what needs storing). Events at or below the current seq are duplicates.
    pub fn apply_sequenced(
        &mut self,
        seq: Seq,
        at: i64,
        event: RoomEvent,
        author: Option<UserId>,
        origin_here: bool,
    ) {
        if seq <= self.seq {
            if !self.diverged {
                return;
            }
            // This replica numbered events on its own during a Redis outage and ran ahead of the
            // cluster: follow the cluster again. Its history no longer matches the other
            // nodes', so it is dropped; clients resuming with a higher seq get a resync.
            self.history.clear();
            // Numbers up to the old seq meant other events here: nobody resumes from them.
            self.resume_floor = self.seq + 1;
            self.seq = seq - 1;
        }
        self.diverged = false;
        self.apply(seq, at, event, author, origin_here);
    }

    /// (Distributed, Redis away) numbers a proposal here so this node's people still see it,
    /// and remembers that this replica's numbers may now run ahead of the cluster's.
    pub fn apply_locally_during_outage(&mut self, proposal: Proposal) {
        let Proposal { at, event, author } = proposal;
        self.apply(self.seq + 1, at, event, author, true);
        self.diverged = true;
    }

    /// Adds the time since the last accrual to everyone present (while live, to the session).
    fn accrue_watch(&mut self, now: i64) {
        let session = self.session_started_at().filter(|_| self.live);
        for (user, presence) in &mut self.users {
            if let Some(started_at) = session {
                *self.watched.entry((started_at, *user)).or_default() +=
                    (now - presence.since).max(0);
            }
            presence.since = now;
        }
    }

    /// Watch time per live session (its `started_at`) and viewer (ms, the host excluded)
    /// accrued here since the last call, sessions in order; the task stores it as increments,
    /// so several nodes and incarnations add up.
    pub fn drain_watch(&mut self, now: i64) -> Vec<(i64, Vec<(UserId, i64)>)> {
        self.accrue_watch(now);
        let host = self.host.as_ref().map(|h| h.id);
        let mut sessions: Vec<(i64, Vec<(UserId, i64)>)> = Vec::new();
        for ((started_at, user), ms) in self.watched.drain() {
            if ms <= 0 || Some(user) == host {
                continue;
            }
            match sessions.iter_mut().find(|(s, _)| *s == started_at) {
                Some((_, viewers)) => viewers.push((user, ms)),
                None => sessions.push((started_at, vec![(user, ms)])),
            }
        }
        sessions.sort_unstable_by_key(|(started_at, _)| *started_at);
        sessions
    }

    /// Every state change of the room happens here, from the event, so replicas on other nodes
    /// that apply the same events in the same order hold the same state.
    fn apply(
        &mut self,
        seq: Seq,
        now: i64,
        mut event: RoomEvent,
        author: Option<UserId>,
        origin_here: bool,
    ) {
        match &mut event {
            RoomEvent::Chat { message } => {
                message.id = seq;
                self.recent_chat.push_back(message.clone());
                while self.recent_chat.len() > self.config.recent_chat {
                    self.recent_chat.pop_front();
                }
                if origin_here {
                    self.outputs.push_back(Output::StoreChat(message.clone()));
                }
            }
            RoomEvent::LiveStarted { .. } | RoomEvent::LiveEnded { .. } => {
                // Watch time counts only while live: settle it before the status flips.
                self.accrue_watch(now);
                let was_live = self.live;
                self.live = matches!(event, RoomEvent::LiveStarted { .. });
                if self.live && !was_live {
                    // A new session, keyed by this event's time (the same on every node).
                    let viewers = self.viewers();
                    self.session = Some(Session {
                        started_at: now,
                        peak: viewers,
                        likes_base: self.likes,
                        likes_final: None,
                    });
                    self.tally(now).peak = viewers;
                } else if !self.live && was_live {
                    let likes = self.session_likes();
                    if let Some(session) = self.session.as_mut() {
                        session.likes_final = Some(likes);
                        let started_at = session.started_at;
                        self.outputs.push_back(Output::SessionEnded { started_at });
                    }
                }
                // A second start (or end) decided on another node at the same time changes
                // nothing, and is not stored again.
                if origin_here && self.live != was_live {
                    self.outputs.push_back(Output::LiveChanged {
                        live: self.live,
                        at: now,
                        peak: self.peak,
                        likes: self.likes,
                    });
                }
            }
            RoomEvent::MessageRemoved { message, .. } => {
                let message = *message;
                self.recent_chat.retain(|m| m.id != message);
                if self.pinned.as_ref().is_some_and(|p| p.id == message) {
                    self.pinned = None;
                }
                if origin_here {
                    self.outputs.push_back(Output::StoreRemoval { message });
                }
            }
            RoomEvent::MessagePinned { message } => self.pinned = Some(message.clone()),
            RoomEvent::MessageUnpinned => self.pinned = None,
            RoomEvent::MediaChanged { publishers, .. } => self.media = publishers.clone(),
            RoomEvent::UserMuted { user, until } => {
                self.muted.insert(*user, *until);
            }
            RoomEvent::UserUnmuted { user } => {
                self.muted.remove(user);
            }
            RoomEvent::MemberJoined { .. }
            | RoomEvent::MemberLeft { .. }
            | RoomEvent::StageChanged { .. }
            | RoomEvent::Commerce { .. } => {}
        }
        self.seq = seq;
        let wire = encode_event(self.id, seq, now, &event);
        let sequenced = Arc::new(Sequenced {
            seq,
            at: now,
            priority: event.priority(),
            event,
            author,
            wire,
        });
        self.history.push_back(sequenced.clone());
        while self.history.len() > self.config.history {
            self.history.pop_front();
        }
        self.outputs.push_back(Output::Broadcast(sequenced));
    }

    /// The current reporting interval (see [`RoomConfig::stats_deliveries_per_second`]).
    pub fn stats_interval_ms(&self) -> i64 {
        let floor = self.config.stats_interval_ms;
        let by_budget =
            self.conns.len() as i64 * 1000 / self.config.stats_deliveries_per_second.max(1);
        by_budget.clamp(floor, self.config.max_stats_interval_ms.max(floor))
    }

    fn maybe_stats(&mut self, now: i64) {
        if self.stats_dirty && now - self.last_stats_at >= self.stats_interval_ms() {
            self.stats_dirty = false;
            self.last_stats_at = now;
            let frame = ServerMsg::Stats {
                room: self.id,
                viewers: self.viewers(),
                peak: self.peak,
                likes: self.likes,
            };
            let json = serde_json::to_string(&frame).unwrap_or_default();
            self.outputs.push_back(Output::Stats(Utf8Bytes::from(json)));
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

/// The main publisher among `publishers`.
fn main_publisher(publishers: &[RoomMedia]) -> Option<RoomMedia> {
    publishers
        .iter()
        .find(|m| m.role == crate::protocol::PublisherRole::Main)
        .cloned()
}
