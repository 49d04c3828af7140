//! In-process viewers: a connection without a socket, for the buyer bots of commerce's simulated
//! traffic. It joins, chats, likes and leaves through the same room commands as a socket's
//! connection — so it counts in viewers, peak, presence and watch time, and its chat meets the
//! same rate limit, word filter and storage — and the room fans out to its queue like to any
//! viewer's. A small task drains that queue and drops every frame (a bot reads nothing), so the
//! hub pays for a bot what it pays for a viewer, minus the socket write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use foundation::ApiError;
use foundation::identity::Principal;
use tokio::sync::mpsc;

use crate::hub::Hub;
use crate::protocol::{ClientMsg, RoomId, UserRef};
use crate::queue::{ConnQueue, Next};
use crate::room::core::ConnId;
use crate::room::task::RoomCommand;

/// One virtual connection in one room. Dropping it leaves the room.
pub struct VirtualConn {
    hub: Arc<Hub>,
    conn: ConnId,
    room: RoomId,
    commands: mpsc::Sender<RoomCommand>,
    /// Set when the hub closed the connection (shutdown, or a queue that overflowed).
    closed: Arc<AtomicBool>,
    drain: tokio::task::JoinHandle<()>,
    left: bool,
}

impl std::fmt::Debug for VirtualConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualConn")
            .field("conn", &self.conn)
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Enters `room` as `principal` through a virtual connection, with the same access check
    /// and role as a socket's `join`.
    pub async fn join_virtual(
        self: &Arc<Self>,
        principal: &Principal,
        room: RoomId,
    ) -> Result<VirtualConn, ApiError> {
        let (conn, queue) = self.open_virtual();
        let user = UserRef {
            id: principal.account_id,
            name: principal.name.clone(),
        };
        let handle = match self
            .enter_room(principal, &user, conn, &queue, room, None, None)
            .await
        {
            Ok(handle) => handle,
            Err(e) => {
                self.close_virtual(conn);
                return Err(e);
            }
        };
        let closed = Arc::new(AtomicBool::new(false));
        let drain = tokio::spawn(drain(queue, closed.clone()));
        Ok(VirtualConn {
            hub: self.clone(),
            conn,
            room,
            commands: handle.commands,
            closed,
            drain,
            left: false,
        })
    }
}

/// Drops every frame the room queues for a virtual connection, until the hub closes it.
async fn drain(queue: Arc<ConnQueue>, closed: Arc<AtomicBool>) {
    loop {
        queue.wait().await;
        loop {
            match queue.pop() {
                Next::Frame(_) => {}
                Next::Close(..) => {
                    closed.store(true, Ordering::Release);
                    return;
                }
                Next::Empty => break,
            }
        }
    }
}

impl VirtualConn {
    pub fn room(&self) -> RoomId {
        self.room
    }

    /// Whether the connection is gone: closed by the hub, or its room's task stopped.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.commands.is_closed()
    }

    /// Sends a chat message, as a socket's `chat` without an `id`: accepted or refused by the
    /// room's rules (the answer is dropped with the rest of the queue). False when gone.
    pub async fn chat(&self, text: String) -> bool {
        self.client(ClientMsg::Chat {
            room: self.room,
            text,
        })
        .await
    }

    /// Sends `count` taps (1–500) as a socket's `like`. False when gone.
    pub async fn like(&self, count: u32) -> bool {
        self.client(ClientMsg::Like {
            room: self.room,
            count,
        })
        .await
    }

    async fn client(&self, msg: ClientMsg) -> bool {
        if self.is_closed() {
            return false;
        }
        self.commands
            .send(RoomCommand::Client {
                conn: self.conn,
                id: None,
                msg,
            })
            .await
            .is_ok()
    }

    /// Leaves the room (the others see `member_left`, the watch time is counted).
    pub async fn leave(mut self) {
        self.left = true;
        let _ = self
            .commands
            .send(RoomCommand::Leave { conn: self.conn })
            .await;
    }
}

impl Drop for VirtualConn {
    fn drop(&mut self) {
        self.drain.abort();
        self.hub.close_virtual(self.conn);
        if self.left {
            return;
        }
        // Dropped without `leave`: leave anyway, from a task since the room's queue may be full
        // (there is no runtime only while the process ends, when rooms go too).
        let commands = self.commands.clone();
        let conn = self.conn;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = commands.send(RoomCommand::Leave { conn }).await;
            });
        }
    }
}
