//! The hub: one per process. Finds or starts the task of a room, decides who may enter a room
//! and in which role, closes the sockets of sessions that ended, and serves each WebSocket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use foundation::identity::{Principal, Role, SESSION_ENDED_TOPIC, SessionEnded};
use foundation::org::Scope;
use foundation::{ApiError, AppState, ErrorCode};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::protocol::{
    ClientFrame, ClientMsg, MemberRole, PROTOCOL_VERSION, RoomEvent, RoomId, RoomMedia, Seq,
    ServerMsg, UserRef, close,
};
use crate::queue::{ConnQueue, Next};
use crate::room::core::{ConnId, RoomConfig};
use crate::room::task::{self, RoomCommand, RoomDeps};
use crate::store::{ChatWrite, RoomRecord, RoomStore, spawn_chat_writer};
use crate::words::WordFilter;

/// Commands a room task may have queued before it falls behind its connections.
const ROOM_COMMAND_BUFFER: usize = 8192;
/// Protocol errors in a row before a connection is closed.
const MAX_ERRORS_IN_A_ROW: u32 = 20;

/// The rooms one connection is in: usually one, so a vector searched in place, grown one slot at
/// a time (it lives as long as the connection).
#[derive(Default)]
struct JoinedRooms(Vec<(RoomId, RoomHandle)>);

impl JoinedRooms {
    fn get(&self, room: &RoomId) -> Option<&RoomHandle> {
        self.0.iter().find(|(r, _)| r == room).map(|(_, h)| h)
    }

    fn insert(&mut self, room: RoomId, handle: RoomHandle) {
        match self.0.iter_mut().find(|(r, _)| *r == room) {
            Some(slot) => slot.1 = handle,
            None => {
                self.0.reserve_exact(1);
                self.0.push((room, handle));
            }
        }
    }

    fn remove(&mut self, room: &RoomId) -> Option<RoomHandle> {
        let index = self.0.iter().position(|(r, _)| r == room)?;
        Some(self.0.swap_remove(index).1)
    }
}

#[derive(Clone)]
pub(crate) struct RoomHandle {
    pub(crate) commands: mpsc::Sender<RoomCommand>,
    record: Arc<RoomRecord>,
}

pub struct Hub {
    app: AppState,
    store: RoomStore,
    chat: mpsc::UnboundedSender<ChatWrite>,
    config: RoomConfig,
    words: RwLock<Arc<WordFilter>>,
    rooms: Mutex<HashMap<RoomId, RoomHandle>>,
    sessions: Mutex<HashMap<String, Vec<Weak<ConnQueue>>>>,
    connections: Mutex<HashMap<ConnId, Weak<ConnQueue>>>,
    next_conn: AtomicU64,
    /// Identifies this node's proposals among the cluster's events.
    node: u64,
    /// What is published in rooms whose media this node serves, so a room task started later
    /// (after an idle unload) still knows.
    media: Mutex<HashMap<RoomId, Vec<RoomMedia>>>,
    /// The stages of live classes (`crate::stage`).
    pub(crate) stage: Arc<crate::stage::Stage>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// Who may publish media in a room (WHIP) and manage its stream key: the host; in a live class
/// also the class's instructors.
pub fn may_publish(role: MemberRole, kind: crate::store::RoomKind) -> bool {
    role == MemberRole::Host
        || (role == MemberRole::Instructor && kind == crate::store::RoomKind::LiveClass)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning only follows a panic elsewhere; the maps stay consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// Starts the hub: loads the word list and listens for ended sessions.
    pub async fn start(app: AppState) -> anyhow::Result<Arc<Self>> {
        let store = RoomStore::new(app.db.clone());
        let words = store.load_words().await?;
        let hub = Arc::new(Self {
            chat: spawn_chat_writer(app.db.clone()),
            store,
            config: RoomConfig::default(),
            words: RwLock::new(Arc::new(words)),
            rooms: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            media: Mutex::new(HashMap::new()),
            stage: Arc::default(),
            node: u64::from_le_bytes(foundation::crypto::random_bytes::<8>()),
            app,
        });
        let mut ended = hub.app.bus.subscribe(SESSION_ENDED_TOPIC).await;
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            while let Some(message) = ended.recv().await {
                let Some(hub) = weak.upgrade() else { break };
                let Ok(payload) = message else { continue };
                if let Ok(event) = serde_json::from_slice::<SessionEnded>(&payload) {
                    hub.close_session(&event.session_hash);
                }
            }
        });
        Ok(hub)
    }

    pub(crate) fn app(&self) -> &AppState {
        &self.app
    }

    pub fn store(&self) -> &RoomStore {
        &self.store
    }

    fn close_session(&self, session_hash: &str) {
        let queues = lock(&self.sessions)
            .remove(session_hash)
            .unwrap_or_default();
        for queue in queues.iter().filter_map(Weak::upgrade) {
            queue.close(close::SESSION_ENDED, "session ended");
        }
    }

    /// Graceful shutdown: closes every connection (clients reconnect elsewhere and resume) and
    /// lets every room task save its totals, waiting up to `grace` for them.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        for queue in lock(&self.connections).values().filter_map(Weak::upgrade) {
            queue.close(close::GOING_AWAY, "server shutting down");
        }
        let handles: Vec<RoomHandle> = lock(&self.rooms).drain().map(|(_, h)| h).collect();
        let saving = handles
            .iter()
            .map(|h| h.commands.send(RoomCommand::Shutdown));
        let _ = tokio::time::timeout(grace, futures::future::join_all(saving)).await;
        let _ = tokio::time::timeout(grace, async {
            for handle in &handles {
                handle.commands.closed().await;
            }
        })
        .await;
    }

    /// Replaces the word list everywhere.
    pub async fn set_words(&self, words: WordFilter) {
        let words = Arc::new(words);
        // A poisoned lock still holds a valid Arc.
        *self.words.write().unwrap_or_else(|e| e.into_inner()) = words.clone();
        let handles: Vec<RoomHandle> = lock(&self.rooms).values().cloned().collect();
        for handle in handles {
            let _ = handle
                .commands
                .send(RoomCommand::SetWords(words.clone()))
                .await;
        }
    }

    /// Current viewer count of a loaded room (None when no task runs for it).
    pub fn is_loaded(&self, room: RoomId) -> bool {
        lock(&self.rooms).contains_key(&room)
    }

    /// The media endpoint's news: announce in the room everyone who publishes now, main first.
    pub async fn announce_media(&self, room: RoomId, media: Vec<RoomMedia>) {
        if media.is_empty() {
            lock(&self.media).remove(&room);
        } else {
            lock(&self.media).insert(room, media.clone());
        }
        match self.room(room).await {
            Ok(handle) => {
                let _ = handle.commands.send(RoomCommand::Media(media)).await;
            }
            Err(e) => tracing::warn!(room, error = ?e, "media change in a room that cannot load"),
        }
    }

    /// Announces `event` in `room` (loading the room if needed): numbered like every room event
    /// and delivered to every viewer on every node, never dropped.
    pub async fn announce(&self, room: RoomId, event: RoomEvent) {
        match self.room(room).await {
            Ok(handle) => {
                let _ = handle.commands.send(RoomCommand::Announce(event)).await;
            }
            Err(e) => tracing::warn!(room, error = ?e, "announcement in a room that cannot load"),
        }
    }

    /// The counters of `room` if it runs on this node now (a room is not loaded for this).
    pub async fn live_counts(&self, room: RoomId) -> Option<task::LiveCounts> {
        let handle = lock(&self.rooms).get(&room).cloned()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        handle.commands.send(RoomCommand::Counts(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The role `principal` has in `room`, the room's kind and class (404 when they may not
    /// enter).
    pub async fn member_role(
        &self,
        principal: &Principal,
        room: RoomId,
    ) -> Result<(MemberRole, crate::store::RoomKind, i64), ApiError> {
        let record = self.record(room).await?;
        let role = self.role_in(principal, &record).await?;
        Ok((role, record.kind, record.class_id))
    }

    /// The account a stream key publishes as in `room` (`crate::stream_keys`): `Some` only for
    /// the room's active key. Whether that account may still publish is the caller's check.
    pub async fn stream_key_principal(
        &self,
        room: RoomId,
        key: &str,
    ) -> Result<Option<Principal>, ApiError> {
        crate::stream_keys::principal(&self.app, room, key).await
    }

    /// Whether `principal` may see `class` (its organisation scope).
    pub async fn class_visible(&self, principal: &Principal, class: i64) -> Result<bool, ApiError> {
        self.app
            .org
            .class_visible(&Scope::of(principal), class)
            .await
    }

    pub async fn role_in(
        &self,
        principal: &Principal,
        record: &RoomRecord,
    ) -> Result<MemberRole, ApiError> {
        if !self
            .app
            .org
            .class_visible(&Scope::of(principal), record.class_id)
            .await?
        {
            return Err(ApiError::with_message(
                ErrorCode::NotFound,
                "直播间不存在或无权进入",
            ));
        }
        if principal.account_id == record.host_id {
            return Ok(MemberRole::Host);
        }
        if principal.has(Role::Instructor)
            && self
                .store
                .is_class_instructor(record.class_id, principal.account_id)
                .await?
        {
            return Ok(MemberRole::Instructor);
        }
        if principal.has(Role::Supervisor)
            || principal.has(Role::PlatformAdmin)
            || principal.has(Role::InstitutionAdmin)
        {
            return Ok(MemberRole::Supervisor);
        }
        Ok(MemberRole::Viewer)
    }

    /// A room's record: from its running task, else from storage.
    async fn record(&self, id: RoomId) -> Result<Arc<RoomRecord>, ApiError> {
        if let Some(handle) = lock(&self.rooms).get(&id) {
            return Ok(handle.record.clone());
        }
        self.store
            .get(id)
            .await?
            .map(Arc::new)
            .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "直播间不存在或无权进入"))
    }

    async fn room(&self, id: RoomId) -> Result<RoomHandle, ApiError> {
        if let Some(handle) = lock(&self.rooms)
            .get(&id)
            .filter(|h| !h.commands.is_closed())
        {
            return Ok(handle.clone());
        }
        let record =
            self.store.get(id).await?.ok_or_else(|| {
                ApiError::with_message(ErrorCode::NotFound, "直播间不存在或无权进入")
            })?;
        let mut rooms = lock(&self.rooms);
        // Another connection may have started it while we read the record.
        if let Some(handle) = rooms.get(&id).filter(|h| !h.commands.is_closed()) {
            return Ok(handle.clone());
        }
        let (tx, rx) = mpsc::channel(ROOM_COMMAND_BUFFER);
        let record = Arc::new(record);
        let handle = RoomHandle {
            commands: tx,
            record: record.clone(),
        };
        rooms.insert(id, handle.clone());
        if let Some(media) = lock(&self.media).get(&id) {
            // The channel is new and empty: this cannot be full.
            let _ = handle.commands.try_send(RoomCommand::Media(media.clone()));
        }
        let deps = RoomDeps {
            store: self.store.clone(),
            chat: self.chat.clone(),
            clock: self.app.clock.clone(),
            config: self.config.clone(),
            words: self.words.read().unwrap_or_else(|e| e.into_inner()).clone(),
            bus: self.app.bus.clone(),
            node: self.node,
            stage: self.stage.clone(),
        };
        tokio::spawn(task::run(record, rx, deps));
        Ok(handle)
    }

    /// Enters `room` as connection `conn` (a socket's, or a virtual one's): checks access before
    /// loading anything for the room, then joins through the room's task, which answers on
    /// `queue` (`joined`, `resumed` or `resync`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn enter_room(
        &self,
        principal: &Principal,
        user: &UserRef,
        conn: ConnId,
        queue: &Arc<ConnQueue>,
        room: RoomId,
        last_seq: Option<Seq>,
        id: Option<u32>,
    ) -> Result<RoomHandle, ApiError> {
        let record = self.record(room).await?;
        let role = self.role_in(principal, &record).await?;
        let handle = self.room(room).await?;
        let command = RoomCommand::Join {
            conn,
            queue: queue.clone(),
            user: user.clone(),
            role,
            last_seq,
            id,
        };
        // The room's task may just have unloaded: start a fresh one once.
        match handle.commands.send(command).await {
            Ok(()) => Ok(handle),
            Err(mpsc::error::SendError(command)) => match self.room(room).await {
                Ok(fresh) if fresh.commands.send(command).await.is_ok() => Ok(fresh),
                _ => Err(ApiError::with_message(
                    ErrorCode::Unavailable,
                    "直播间暂时不可用，请重试",
                )),
            },
        }
    }

    /// A connection without a socket (`virtual_conn`): its id and queue, known to the hub like a
    /// socket's, so that shutdown closes it too.
    pub(crate) fn open_virtual(&self) -> (ConnId, Arc<ConnQueue>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(ConnQueue::default());
        lock(&self.connections).insert(conn, Arc::downgrade(&queue));
        (conn, queue)
    }

    pub(crate) fn close_virtual(&self, conn: ConnId) {
        lock(&self.connections).remove(&conn);
    }

    /// Serves one WebSocket until it closes.
    ///
    /// The future lives as long as the connection, idle or not, so its size is memory per
    /// connection: it is an `async` block in a plain function, because an `async fn` keeps a
    /// second copy of its arguments, and the socket is split before the block captures it so the
    /// block does not also reserve room for the whole `WebSocket`.
    pub fn serve(
        self: Arc<Self>,
        socket: WebSocket,
        principal: Arc<Principal>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (mut sink, mut stream) = socket.split();
        async move {
            let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
            let queue = Arc::new(ConnQueue::default());
            lock(&self.connections).insert(conn, Arc::downgrade(&queue));
            lock(&self.sessions)
                .entry(principal.session_hash.clone())
                .or_default()
                .push(Arc::downgrade(&queue));
            let user = UserRef {
                id: principal.account_id,
                name: principal.name.clone(),
            };
            queue.push_system(encode(&ServerMsg::Welcome {
                v: PROTOCOL_VERSION,
                user: user.clone(),
                server_time: self.app.clock.now_millis(),
            }));
            let mut joined = JoinedRooms::default();
            let mut errors_in_row = 0u32;
            'connection: loop {
                tokio::select! {
                    biased;
                    _ = queue.wait() => {
                        loop {
                            match queue.pop() {
                                Next::Frame(frame) => {
                                    if sink.feed(Message::Text(frame)).await.is_err() {
                                        break 'connection;
                                    }
                                }
                                Next::Close(code, reason) => {
                                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))).await;
                                    break 'connection;
                                }
                                Next::Empty => break,
                            }
                        }
                        if sink.flush().await.is_err() {
                            break;
                        }
                    }
                    incoming = stream.next() => match incoming {
                        Some(Ok(Message::Text(text))) => {
                            // Boxed: its database look-ups would otherwise make every idle connection's
                            // future as large as the rarest join.
                            let ok = Box::pin(self.handle_text(&principal, &user, conn, &queue, &mut joined, text.as_str())).await;
                            errors_in_row = if ok { 0 } else { errors_in_row + 1 };
                        }
                        Some(Ok(Message::Binary(_))) => {
                            queue.push_system(error_frame(None, "invalid_message", "只支持 JSON 文本消息"));
                            errors_in_row += 1;
                        }
                        Some(Ok(Message::Close(_))) => {
                            // The library queued the close reply; flush it so the client sees a clean
                            // close rather than a reset.
                            let _ = sink.close().await;
                            break;
                        }
                        None => break,
                        Some(Ok(_)) => {} // ping/pong: answered by the library
                        Some(Err(e)) => {
                            // Oversize frames and broken framing end here; say why when we can.
                            let (code, reason) = if e.to_string().to_lowercase().contains("too long") || e.to_string().contains("size") {
                                (1009, "message too big (16 KiB at most)")
                            } else {
                                (close::PROTOCOL_ERROR, "protocol error")
                            };
                            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))).await;
                            break;
                        }
                    }
                }
                if errors_in_row >= MAX_ERRORS_IN_A_ROW {
                    queue.close(close::PROTOCOL_ERROR, "too many invalid messages");
                }
            }
            // Boxed: only a closing connection needs room for the leave messages.
            Box::pin(self.forget(conn, &principal.session_hash, &queue, joined)).await;
        }
    }

    /// A connection closed: leave its rooms, drop it from the indexes.
    async fn forget(
        &self,
        conn: ConnId,
        session_hash: &str,
        queue: &Arc<ConnQueue>,
        joined: JoinedRooms,
    ) {
        for (room, handle) in joined.0 {
            let _ = handle.commands.send(RoomCommand::Leave { conn }).await;
            tracing::trace!(room, conn, "left on disconnect");
        }
        lock(&self.connections).remove(&conn);
        let mut sessions = lock(&self.sessions);
        if let Some(list) = sessions.get_mut(session_hash) {
            list.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(queue)));
            if list.is_empty() {
                sessions.remove(session_hash);
            }
        }
    }

    /// Handles one text frame; false when it was invalid.
    async fn handle_text(
        &self,
        principal: &Principal,
        user: &UserRef,
        conn: ConnId,
        queue: &Arc<ConnQueue>,
        joined: &mut JoinedRooms,
        text: &str,
    ) -> bool {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let message = format!("无法解析的消息：{e}");
                queue.push_system(error_frame(None, "invalid_message", &message));
                return false;
            }
        };
        if frame.v != PROTOCOL_VERSION {
            queue.push_system(error_frame(
                frame.id,
                "unsupported_version",
                "协议版本不受支持，请刷新页面",
            ));
            return false;
        }
        let id = frame.id;
        match frame.msg {
            ClientMsg::Ping => queue.push_system(encode(&ServerMsg::Pong {
                server_time: self.app.clock.now_millis(),
            })),
            ClientMsg::Join { room, last_seq } => {
                match self
                    .enter_room(principal, user, conn, queue, room, last_seq, id)
                    .await
                {
                    Ok(handle) => joined.insert(room, handle),
                    Err(e) => queue.push_system(error_frame(id, e.code.as_str(), e.message())),
                }
            }
            ClientMsg::Leave { room } => match joined.remove(&room) {
                Some(handle) => {
                    // A room task that has gone cannot answer; say it here.
                    if handle
                        .commands
                        .send(RoomCommand::Leave { conn })
                        .await
                        .is_err()
                    {
                        queue.push_system(encode(&ServerMsg::Left { room }));
                    }
                }
                None => queue.push_system(error_frame(id, "not_in_room", "你不在这个直播间")),
            },
            msg => {
                let Some(room) = msg.room() else { return true };
                let Some(handle) = joined.get(&room) else {
                    queue.push_system(error_frame(id, "not_in_room", "请先进入直播间"));
                    return true;
                };
                if handle
                    .commands
                    .send(RoomCommand::Client { conn, id, msg })
                    .await
                    .is_err()
                {
                    queue.push_system(error_frame(
                        id,
                        "unavailable",
                        "直播间暂时不可用，请重新进入",
                    ));
                }
            }
        }
        true
    }
}

/// Size of the future that serves one socket (for the idle-memory test).
#[cfg(test)]
fn serve_future_size() -> usize {
    fn size<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    // Never called: only its future's type is measured.
    fn make(
        hub: Arc<Hub>,
        socket: WebSocket,
        principal: Arc<Principal>,
    ) -> impl std::future::Future<Output = ()> {
        hub.serve(socket, principal)
    }
    size(make)
}

fn encode(msg: &ServerMsg) -> Utf8Bytes {
    // Serialising our own protocol types into a String cannot fail.
    Utf8Bytes::from(serde_json::to_string(msg).unwrap_or_default())
}

fn error_frame(id: Option<u32>, code: &str, message: &str) -> Utf8Bytes {
    encode(&ServerMsg::Error {
        id,
        code: code.to_owned(),
        message: message.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    /// The per-socket future lives as long as the connection: keep it small (idle memory).
    #[test]
    fn the_connection_future_stays_small() {
        let size = super::serve_future_size();
        println!("connection future: {size} bytes");
        // 432 bytes when written; it was 2.5 KB before the principal was shared and the socket
        // split outside the future.
        assert!(size <= 640, "{size} bytes");
    }
}
