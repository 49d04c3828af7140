//! The outbound queue of one connection, filled by room tasks and drained by the connection's
//! socket writer. Bounded, with delivery classes: system frames are never dropped (a client that
//! lets 512 of them pile up is disconnected as too slow), chat frames are dropped oldest-first
//! beyond 64, and counters keep only their latest value.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

use crate::protocol::{RoomId, close};

const MAX_SYSTEM: usize = 512;
const MAX_CHAT: usize = 64;

#[derive(Debug, Default)]
struct Inner {
    system: VecDeque<Utf8Bytes>,
    chat: VecDeque<Utf8Bytes>,
    /// Latest counters per room (a connection may be in several rooms).
    stats: Vec<(RoomId, Utf8Bytes)>,
    close: Option<(u16, &'static str)>,
    dropped_chat: u64,
}

/// What the writer should do next.
#[derive(Debug)]
pub enum Next {
    Frame(Utf8Bytes),
    Close(u16, &'static str),
    Empty,
}

#[derive(Debug, Default)]
pub struct ConnQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl ConnQueue {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A poisoned lock only means a panic elsewhere while holding plain queues.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// A frame that must arrive (events, answers, replays).
    pub fn push_system(&self, frame: Utf8Bytes) {
        let pushed = self.with(|q| {
            if q.close.is_some() {
                return false;
            }
            if q.system.len() >= MAX_SYSTEM {
                q.close = Some((close::TOO_SLOW, "too slow: reconnect with last_seq"));
            } else {
                q.system.push_back(frame);
            }
            true
        });
        if pushed {
            self.notify.notify_one();
        }
    }

    /// A frame that may be dropped under load (chat, presence).
    pub fn push_chat(&self, frame: Utf8Bytes) {
        self.with(|q| {
            if q.chat.len() >= MAX_CHAT {
                q.chat.pop_front();
                q.dropped_chat += 1;
            }
            q.chat.push_back(frame);
        });
        self.notify.notify_one();
    }

    /// The latest counters of `room`; replaces that room's counters not yet sent.
    pub fn push_stats(&self, room: RoomId, frame: Utf8Bytes) {
        self.with(|q| match q.stats.iter_mut().find(|(r, _)| *r == room) {
            Some(slot) => slot.1 = frame,
            None => {
                // One slot per room joined, not the vector's default of four.
                q.stats.reserve_exact(1);
                q.stats.push((room, frame));
            }
        });
        self.notify.notify_one();
    }

    /// Asks the writer to close the socket with `code`.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.with(|q| {
            q.close.get_or_insert((code, reason));
        });
        self.notify.notify_one();
    }

    /// System frames first, then counters, then chat; a pending close wins over everything.
    pub fn pop(&self) -> Next {
        self.with(|q| {
            if let Some((code, reason)) = q.close {
                return Next::Close(code, reason);
            }
            if let Some(frame) = q.system.pop_front() {
                return Next::Frame(frame);
            }
            if let Some((_, frame)) = q.stats.pop() {
                return Next::Frame(frame);
            }
            match q.chat.pop_front() {
                Some(frame) => Next::Frame(frame),
                None => Next::Empty,
            }
        })
    }

    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    pub fn dropped_chat(&self) -> u64 {
        self.with(|q| q.dropped_chat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s.to_owned())
    }

    fn next_text(q: &ConnQueue) -> Option<String> {
        match q.pop() {
            Next::Frame(f) => Some(f.as_str().to_owned()),
            _ => None,
        }
    }

    #[test]
    fn system_before_stats_before_chat_and_stats_coalesce() {
        let q = ConnQueue::default();
        q.push_chat(frame("c1"));
        q.push_stats(1, frame("s1"));
        q.push_stats(1, frame("s2"));
        q.push_system(frame("e1"));
        assert_eq!(next_text(&q).as_deref(), Some("e1"));
        assert_eq!(next_text(&q).as_deref(), Some("s2"));
        assert_eq!(next_text(&q).as_deref(), Some("c1"));
        assert!(matches!(q.pop(), Next::Empty));
        // Counters of different rooms do not replace each other.
        q.push_stats(1, frame("room1"));
        q.push_stats(2, frame("room2"));
        let mut got = vec![next_text(&q).unwrap(), next_text(&q).unwrap()];
        got.sort();
        assert_eq!(got, ["room1", "room2"]);
    }

    #[test]
    fn chat_drops_oldest_but_system_never_drops_it_closes() {
        let q = ConnQueue::default();
        for i in 0..(MAX_CHAT + 10) {
            q.push_chat(frame(&format!("c{i}")));
        }
        assert_eq!(q.dropped_chat(), 10);
        assert_eq!(next_text(&q).as_deref(), Some("c10"));
        for i in 0..MAX_SYSTEM {
            q.push_system(frame(&format!("e{i}")));
        }
        assert!(!matches!(q.pop(), Next::Close(..)));
        for i in 0..MAX_SYSTEM {
            q.push_system(frame(&format!("e{i}")));
        }
        assert!(matches!(q.pop(), Next::Close(close::TOO_SLOW, _)));
    }
}
