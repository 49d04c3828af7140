//! The task that runs one room: owns its [`RoomCore`] and the outbound queues of the connections
//! in it, turns commands into core inputs with the current time, and carries the core's outputs
//! out — fan-out (each frame encoded once, shared by every queue), per-viewer chat sampling,
//! storage — then unloads itself when the room has been empty for a while.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foundation::bus::{Bus, Subscription, split_numbered};
use foundation::clock::Clock;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::core::{ConnId, Input, Output, Proposal, RoomConfig, RoomCore, Sequencing};
use crate::protocol::{ClientMsg, MemberRole, Priority, Seq, ServerMsg, UserId, UserRef};
use crate::queue::ConnQueue;
use crate::store::{ChatWrite, RoomRecord, RoomStore};
use crate::words::WordFilter;

/// Each viewer receives at most this many chat frames per second from others.
const CHAT_PER_VIEWER_PER_SECOND: f64 = 20.0;
/// An empty, not-live room unloads after this long.
const IDLE_UNLOAD: Duration = Duration::from_secs(30);
/// The room's tick: counters, sampling, timers.
const TICK: Duration = Duration::from_millis(100);
/// How often (ms) a room task hands its viewers' watch time to the batch writer: 5 s, by
/// elapsed time rather than tick count (ticks are skipped when the task falls behind).
/// Commerce's watch lucky bags wait for the first save after their deadline.
pub const WATCH_SAVE_MS: i64 = 5_000;

#[derive(Debug)]
pub enum RoomCommand {
    Join {
        conn: ConnId,
        queue: Arc<ConnQueue>,
        user: UserRef,
        role: MemberRole,
        last_seq: Option<Seq>,
        id: Option<u32>,
    },
    Leave {
        conn: ConnId,
    },
    Client {
        conn: ConnId,
        id: Option<u32>,
        msg: ClientMsg,
    },
    SetWords(Arc<WordFilter>),
    /// What the room's publisher sends now (from the media endpoint).
    Media(Vec<crate::protocol::RoomMedia>),
    /// An event of another part of the node (commerce), to number and deliver.
    Announce(crate::protocol::RoomEvent),
    /// The counters now: viewers, and the current (or last) live session's peak and likes
    /// (for dashboards).
    Counts(tokio::sync::oneshot::Sender<LiveCounts>),
    /// Save the totals and stop (graceful shutdown).
    Shutdown,
}

/// A loaded room's counters for dashboards: whether it is live, the viewers now, and the peak
/// and likes of its current (or last) live session as this node sees them — not the room's
/// totals over all its lives, which its `stats` frames carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveCounts {
    pub live: bool,
    pub viewers: u32,
    pub peak: u32,
    pub likes: u64,
    /// Which session `peak` and `likes` are of (its `started_at`); none when this node has not
    /// seen the room live since it loaded it.
    pub session: Option<i64>,
}

struct Slot {
    queue: Arc<ConnQueue>,
    user: UserId,
    /// Chat sampling budget: tokens refill at 20 per second, up to 20.
    chat_tokens: f64,
    chat_updated: i64,
}

impl Slot {
    fn take_chat(&mut self, now: i64) -> bool {
        let elapsed = (now - self.chat_updated).max(0) as f64 / 1000.0;
        self.chat_tokens = (self.chat_tokens + elapsed * CHAT_PER_VIEWER_PER_SECOND)
            .min(CHAT_PER_VIEWER_PER_SECOND);
        self.chat_updated = now;
        if self.chat_tokens >= 1.0 {
            self.chat_tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a room task needs from the world.
#[derive(Clone)]
pub struct RoomDeps {
    pub store: RoomStore,
    pub chat: mpsc::UnboundedSender<ChatWrite>,
    pub clock: Arc<dyn Clock>,
    pub config: RoomConfig,
    pub words: Arc<WordFilter>,
    pub bus: Arc<dyn Bus>,
    /// This node's id in proposals, to recognise its own events coming back.
    pub node: u64,
    /// The stages of live classes: emptied when the live ends.
    pub stage: Arc<crate::stage::Stage>,
}

/// A proposal on the wire between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct WireProposal {
    origin: u64,
    #[serde(flatten)]
    proposal: Proposal,
}

/// Names of a room's shared state on the bus and in Redis, and its subscriptions.
struct Cluster {
    events_topic: String,
    seq_counter: String,
    likes_topic: String,
    likes_counter: String,
    viewers_key: String,
}

impl Cluster {
    /// The room's names, and subscriptions to its events and like totals.
    async fn join(bus: &dyn Bus, room: i64) -> (Self, Subscription, Subscription) {
        let events_topic = format!("room.{room}.events");
        let likes_topic = format!("room.{room}.likes");
        let events = bus.subscribe(&events_topic).await;
        let likes = bus.subscribe(&likes_topic).await;
        let cluster = Self {
            events_topic,
            likes_topic,
            seq_counter: format!("room:{room}:seq"),
            likes_counter: format!("room:{room}:likes"),
            viewers_key: format!("room:{room}:viewers"),
        };
        (cluster, events, likes)
    }
}

/// The next message of an optional subscription; never resolves without one.
async fn next_of(sub: Option<&mut Subscription>) -> Option<Result<Bytes, u64>> {
    match sub {
        Some(sub) => sub.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs until the room has been empty and not live for [`IDLE_UNLOAD`], or the hub drops it.
/// Returns so the hub can forget it.
pub async fn run(
    record: Arc<RoomRecord>,
    mut commands: mpsc::Receiver<RoomCommand>,
    deps: RoomDeps,
) {
    let now = deps.clock.now_millis();
    let host = UserRef {
        id: record.host_id,
        name: record.host_name.clone(),
    };
    let start_seq = u64::try_from(now).unwrap_or_default().saturating_mul(1000);
    let mut core = RoomCore::new(
        record.id,
        start_seq,
        Some(host),
        record.status == "live",
        u64::try_from(record.likes).unwrap_or_default(),
        u32::try_from(record.peak_viewers).unwrap_or_default(),
        deps.config.clone(),
        deps.words.clone(),
    );
    if record.status == "live" {
        // Loaded while live: the live session continues with its stored numbers. A live room
        // always has a start (`set_live`); the load time stands in should one be missing.
        core = core.resume_session(
            record.started_at.unwrap_or(now),
            u32::try_from(record.session_peak.unwrap_or_default()).unwrap_or_default(),
            u64::try_from(record.session_likes.unwrap_or_default()).unwrap_or_default(),
        );
    }
    // With several nodes, the cluster numbers the events and every node applies them.
    let (cluster, mut events, mut likes) = if deps.bus.is_distributed() {
        core = core.with_sequencing(Sequencing::External);
        let (cluster, events, likes) = Cluster::join(deps.bus.as_ref(), record.id).await;
        (Some(cluster), Some(events), Some(likes))
    } else {
        (None, None, None)
    };
    let mut ticks = 0u64;
    let mut watch_saved = tokio::time::Instant::now();
    let mut slots: HashMap<ConnId, Slot> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut empty_since: Option<i64> = None;
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                let now = deps.clock.now_millis();
                match command {
                    RoomCommand::Join { conn, queue, user, role, last_seq, id } => {
                        slots.insert(conn, Slot { queue, user: user.id, chat_tokens: CHAT_PER_VIEWER_PER_SECOND, chat_updated: now });
                        core.handle(now, Input::Join { conn, user, role, last_seq, id });
                    }
                    RoomCommand::Leave { conn } => {
                        core.handle(now, Input::Leave { conn });
                        if let Some(slot) = slots.remove(&conn) {
                            let left = ServerMsg::Left { room: record.id };
                            slot.queue.push_system(encode(&left));
                        }
                    }
                    RoomCommand::Client { conn, id, msg } => core.handle(now, Input::Client { conn, id, msg }),
                    RoomCommand::SetWords(words) => core.set_words(words),
                    RoomCommand::Media(media) => core.handle(now, Input::Media(media)),
                    RoomCommand::Announce(event) => core.handle(now, Input::Announce(event)),
                    RoomCommand::Counts(reply) => {
                        let _ = reply.send(LiveCounts {
                            live: core.is_live(),
                            viewers: core.viewers(),
                            peak: core.session_peak(),
                            likes: core.session_likes(),
                            session: core.session_started_at(),
                        });
                    }
                    RoomCommand::Shutdown => break,
                }
                flush(&mut core, &mut slots, &record, &deps, cluster.as_ref(), now).await;
            }
            message = next_of(events.as_mut()) => {
                let now = deps.clock.now_millis();
                match message {
                    Some(Ok(bytes)) => {
                        let Some((seq, payload)) = split_numbered(&bytes) else { continue };
                        let Ok(wire) = serde_json::from_slice::<WireProposal>(&payload) else { continue };
                        let Proposal { at, event, author } = wire.proposal;
                        core.apply_sequenced(seq, at, event, author, wire.origin == deps.node);
                    }
                    Some(Err(missed)) => tracing::warn!(room = record.id, missed, "room fell behind the cluster's events"),
                    None => break,
                }
                flush(&mut core, &mut slots, &record, &deps, cluster.as_ref(), now).await;
            }
            message = next_of(likes.as_mut()) => {
                if let Some(Ok(bytes)) = message
                    && let Some(total) = std::str::from_utf8(&bytes).ok().and_then(|t| t.parse().ok())
                {
                    core.cluster_likes_total(total);
                }
            }
            _ = tick.tick() => {
                let now = deps.clock.now_millis();
                ticks += 1;
                if let Some(cluster) = &cluster {
                    sync_counters(&mut core, cluster, &record, &deps, ticks).await;
                }
                if ticks.is_multiple_of(100) {
                    save_totals(&mut core, &record, &deps).await;
                }
                if watch_saved.elapsed() >= Duration::from_millis(WATCH_SAVE_MS as u64) {
                    watch_saved = tokio::time::Instant::now();
                    save_watch(&mut core, &record, &deps, now);
                }
                core.handle(now, Input::Tick);
                flush(&mut core, &mut slots, &record, &deps, cluster.as_ref(), now).await;
                if slots.is_empty() && !core.is_live() {
                    let since = *empty_since.get_or_insert(now);
                    if now - since >= IDLE_UNLOAD.as_millis() as i64 {
                        // Nothing new gets in; anyone who raced in is told to join again (the
                        // hub then starts a fresh task).
                        commands.close();
                        while let Ok(command) = commands.try_recv() {
                            if let RoomCommand::Join { queue, id, .. } = command {
                                queue.push_system(encode(&ServerMsg::Error {
                                    id,
                                    code: "unavailable".into(),
                                    message: "直播间正在重新加载，请重新进入".into(),
                                }));
                            }
                        }
                        break;
                    }
                } else {
                    empty_since = None;
                }
            }
        }
    }
    save_totals(&mut core, &record, &deps).await;
    save_watch(&mut core, &record, &deps, deps.clock.now_millis());
}

/// Hands the watch time accrued since the last call to the batch writer (every 5 s, at the end
/// of a live, and when the room unloads).
fn save_watch(core: &mut RoomCore, record: &RoomRecord, deps: &RoomDeps, now: i64) {
    for (session, viewers) in core.drain_watch(now) {
        let _ = deps.chat.send(ChatWrite::Watched {
            room: record.id,
            session,
            at: now,
            viewers,
        });
    }
}

fn encode(msg: &ServerMsg) -> axum::extract::ws::Utf8Bytes {
    // Serialising our own protocol types into a String cannot fail.
    axum::extract::ws::Utf8Bytes::from(serde_json::to_string(msg).unwrap_or_default())
}

/// Adds the likes taken here since the last save to the stored totals of the room and of the
/// live sessions they were taken in (increments, so two incarnations of a room, or several
/// nodes, never overwrite each other), and raises the stored peaks. Every 10 s, at the end of
/// a live and when the room unloads; what fails to store is kept for the next save.
async fn save_totals(core: &mut RoomCore, record: &RoomRecord, deps: &RoomDeps) {
    let Some(totals) = core.take_totals() else {
        return;
    };
    if let Err(e) = deps.store.add_totals(record.id, &totals).await {
        tracing::warn!(room = record.id, error = %e, "could not save room totals");
        core.restore_totals(totals);
    }
}

/// (Distributed) adds this node's likes to the cluster counter every 200 ms (one Redis call
/// however many taps) and sums the viewers of every node every second. A failed call keeps the
/// likes for the next try, so none is lost.
async fn sync_counters(
    core: &mut RoomCore,
    cluster: &Cluster,
    record: &RoomRecord,
    deps: &RoomDeps,
    ticks: u64,
) {
    let delta = core.unflushed_likes();
    if ticks.is_multiple_of(2) && delta > 0 {
        let floor = u64::try_from(record.likes).unwrap_or_default();
        if let Ok(total) = deps
            .bus
            .add_and_announce(&cluster.likes_topic, &cluster.likes_counter, floor, delta)
            .await
        {
            core.likes_flushed(delta, total);
        }
    }
    if ticks.is_multiple_of(10)
        && let Ok(viewers) = deps
            .bus
            .gauge_sum(&cluster.viewers_key, u64::from(core.local_viewers()))
            .await
    {
        core.set_cluster_viewers(u32::try_from(viewers).unwrap_or(u32::MAX));
    }
}

/// Carries out the core's outputs. Live status changes are stored in order, inline: they are
/// rare, and a start must never be overtaken by its end. Proposals go to the cluster's
/// sequencer one at a time, so this node's events keep their order.
async fn flush(
    core: &mut RoomCore,
    slots: &mut HashMap<ConnId, Slot>,
    record: &RoomRecord,
    deps: &RoomDeps,
    cluster: Option<&Cluster>,
    now: i64,
) {
    while let Some(output) = core.poll_output() {
        match output {
            Output::Broadcast(event) => match event.priority {
                Priority::System => {
                    for slot in slots.values() {
                        slot.queue.push_system(event.wire.clone());
                    }
                }
                Priority::Chat => {
                    let always = |slot: &Slot| {
                        Some(slot.user) == event.author || event.author == Some(record.host_id)
                    };
                    for slot in slots.values_mut() {
                        if always(slot) {
                            slot.queue.push_system(event.wire.clone());
                        } else if slot.take_chat(now) {
                            slot.queue.push_chat(event.wire.clone());
                        }
                    }
                }
            },
            Output::Send { conn, msg } => {
                if let Some(slot) = slots.get(&conn) {
                    slot.queue.push_system(encode(&msg));
                }
            }
            Output::Replay { conn, events } => {
                if let Some(slot) = slots.get(&conn) {
                    for event in events {
                        slot.queue.push_system(event.wire.clone());
                    }
                }
            }
            Output::Stats(frame) => {
                for slot in slots.values() {
                    slot.queue.push_stats(record.id, frame.clone());
                }
            }
            Output::StoreChat(message) => {
                let _ = deps.chat.send(ChatWrite::Message(record.id, message));
            }
            Output::StoreRemoval { message } => {
                let _ = deps.chat.send(ChatWrite::Removed(record.id, message));
            }
            Output::Propose(proposal) => {
                let Some(cluster) = cluster else { continue };
                let wire = WireProposal {
                    origin: deps.node,
                    proposal,
                };
                // Serialising our own types into a Vec cannot fail.
                let payload = serde_json::to_vec(&wire).unwrap_or_default();
                // The floor keeps the cluster's numbers above any this room used on its own.
                let sent = deps
                    .bus
                    .publish_numbered(
                        &cluster.events_topic,
                        &cluster.seq_counter,
                        core.seq(),
                        &payload,
                    )
                    .await;
                if sent.is_err() {
                    // Redis is away: number it here so this node's people still see it.
                    core.apply_locally_during_outage(wire.proposal);
                }
            }
            Output::SessionEnded { .. } => {
                // The report of the live that just ended needs its watch time and totals from
                // every node; on the node that ended it, they are stored (or queued, for watch
                // time) before the room is marked ended.
                save_watch(core, record, deps, now);
                save_totals(core, record, deps).await;
            }
            Output::LiveChanged { live, at, peak, .. } => {
                if let Err(e) = deps.store.set_live(record.id, live, peak, at).await {
                    tracing::error!(room = record.id, error = %e, "could not store the live status");
                }
                // An invitation on stage lasts for one live only.
                if !live && !deps.stage.clear(record.id).is_empty() {
                    core.handle(
                        now,
                        Input::Announce(crate::protocol::RoomEvent::StageChanged {
                            stage: Vec::new(),
                        }),
                    );
                }
            }
        }
    }
}
