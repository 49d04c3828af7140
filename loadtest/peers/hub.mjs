// The part of livecamp's hub protocol (docs/protocol.md, signaling/src/protocol.rs) that the
// fan-out benchmark uses, shared by the two peer servers. Each server supplies the transport:
// how one frame reaches one connection, and how one frame reaches every member of a room.
//
// Kept on purpose: the message shapes, per-room `seq` starting at load time in ms × 1000, the
// first joiner (or a token starting with "host") as host, `viewers` not counting hosts, chat text
// cleaning and the 1–200 character limit, `like` counts of 1–500, `ack`/`error` with the frame's
// `id`, `stats` at most every 250 ms per room while the counters change, less often in big rooms
// (at most 10,000 stats deliveries per second, every 2 s at the least).
// Left out: authentication, chat sampling and per-connection queue bounds, rate limits, mutes,
// moderation, live start/end, presence events, resume (a `join` with `last_seq` gets `resync`).

export const PROTOCOL_VERSION = 1;
const STATS_INTERVAL_MS = 250;
const STATS_DELIVERIES_PER_SECOND = 10_000;
const MAX_STATS_INTERVAL_MS = 2_000;
const MAX_CHAT_CHARS = 200;
const MAX_U32 = 0xffffffff;

/** One connection's state. `transport` is whatever the server needs to reach it. */
export class Conn {
  constructor(user, hostToken, transport) {
    this.user = user; // { id, name }
    this.hostToken = hostToken;
    this.transport = transport;
    /** room id → role in that room */
    this.rooms = new Map();
  }
}

class Room {
  constructor(id, now) {
    this.id = id;
    this.seq = now * 1000;
    this.members = new Set();
    this.viewers = 0;
    this.peak = 0;
    this.likes = 0;
    this.dirty = false;
    this.lastStatsAt = 0;
  }

  statsIntervalMs() {
    const byBudget = Math.floor((this.members.size * 1000) / STATS_DELIVERIES_PER_SECOND);
    return Math.min(MAX_STATS_INTERVAL_MS, Math.max(STATS_INTERVAL_MS, byBudget));
  }
}

const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/g;

function charCount(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++; // count each surrogate pair once
  }
  return n;
}

const ROOM_TYPES = new Set(['join', 'leave', 'chat', 'like']);
const isInt = Number.isSafeInteger;
const isU32 = (x) => isInt(x) && x >= 0 && x <= MAX_U32;

/**
 * The rooms and the protocol logic.
 * `send(conn, text)`: one frame to one connection.
 * `broadcast(room, text)`: the same encoded frame to every member of `room` (a Room).
 * `onJoin(conn, roomId)` / `onLeave(conn, roomId)`: membership hooks for the transport.
 */
export class Hub {
  constructor({ send, broadcast, onJoin = () => {}, onLeave = () => {} }) {
    this.send = send;
    this.broadcast = broadcast;
    this.onJoin = onJoin;
    this.onLeave = onLeave;
    this.rooms = new Map();
    this.dirtyRooms = new Set();
    this.nextUser = 1;
    this.timer = setInterval(() => this.flushStats(), STATS_INTERVAL_MS);
  }

  stop() {
    clearInterval(this.timer);
  }

  /** A new connection; answers with `welcome`. `token` may be null. */
  connect(token, transport) {
    const id = this.nextUser++;
    const conn = new Conn({ id, name: `u ${id}` }, typeof token === 'string' && token.startsWith('host'), transport);
    this.send(conn, JSON.stringify({ type: 'welcome', v: PROTOCOL_VERSION, user: conn.user, server_time: Date.now() }));
    return conn;
  }

  /** The connection closed: it leaves every room it was in. */
  disconnect(conn) {
    for (const roomId of conn.rooms.keys()) this.leaveRoom(conn, roomId);
  }

  /** A text frame from a client. */
  handle(conn, text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (e) {
      return this.invalid(conn, e.message);
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      return this.invalid(conn, 'expected a JSON object');
    }
    const { v, id, type } = frame;
    if (v === undefined) return this.invalid(conn, 'missing field `v`');
    if (!isInt(v) || v < 0 || v > 255) return this.invalid(conn, 'invalid `v`');
    if (id !== undefined && id !== null && !isU32(id)) return this.invalid(conn, 'invalid `id`');
    const reqId = isU32(id) ? id : undefined;
    if (typeof type !== 'string') return this.invalid(conn, 'missing field `type`');
    if (v !== PROTOCOL_VERSION) {
      return this.error(conn, reqId, 'unsupported_version', '协议版本不受支持，请刷新页面');
    }
    if (type === 'ping') {
      return this.send(conn, JSON.stringify({ type: 'pong', server_time: Date.now() }));
    }
    if (!ROOM_TYPES.has(type)) {
      return this.invalid(conn, `unknown or unsupported variant \`${type}\` (this peer knows join, leave, chat, like, ping)`);
    }
    const room = frame.room;
    if (!isInt(room)) return this.invalid(conn, 'missing or invalid field `room`');
    switch (type) {
      case 'join': {
        const lastSeq = frame.last_seq;
        if (lastSeq !== undefined && lastSeq !== null && !(isInt(lastSeq) && lastSeq >= 0)) {
          return this.invalid(conn, 'invalid field `last_seq`');
        }
        return this.join(conn, room, lastSeq !== undefined && lastSeq !== null);
      }
      case 'leave':
        if (!conn.rooms.has(room)) return this.error(conn, reqId, 'not_in_room', '你不在这个直播间');
        this.leaveRoom(conn, room);
        return this.send(conn, JSON.stringify({ type: 'left', room }));
      case 'chat':
        if (typeof frame.text !== 'string') return this.invalid(conn, 'missing or invalid field `text`');
        return this.chat(conn, reqId, room, frame.text);
      case 'like':
        if (!isU32(frame.count)) return this.invalid(conn, 'missing or invalid field `count`');
        return this.like(conn, reqId, room, frame.count);
    }
  }

  invalid(conn, detail) {
    this.send(conn, JSON.stringify({ type: 'error', code: 'invalid_message', message: `无法解析的消息：${detail}` }));
  }

  binary(conn) {
    this.send(conn, JSON.stringify({ type: 'error', code: 'invalid_message', message: '只支持 JSON 文本消息' }));
  }

  error(conn, id, code, message) {
    const frame = id === undefined ? { type: 'error', code, message } : { type: 'error', id, code, message };
    this.send(conn, JSON.stringify(frame));
  }

  ack(conn, id) {
    if (id !== undefined) this.send(conn, JSON.stringify({ type: 'ack', id }));
  }

  join(conn, roomId, resuming) {
    let room = this.rooms.get(roomId);
    let role = conn.rooms.get(roomId);
    if (role === undefined) {
      const fresh = room === undefined;
      if (fresh) {
        room = new Room(roomId, Date.now());
        this.rooms.set(roomId, room);
      }
      role = fresh || conn.hostToken ? 'host' : 'viewer';
      conn.rooms.set(roomId, role);
      room.members.add(conn);
      if (role === 'viewer') {
        room.viewers++;
        if (room.viewers > room.peak) room.peak = room.viewers;
      }
      this.onJoin(conn, roomId);
    }
    this.markDirty(room);
    const state = {
      live: true,
      seq: room.seq,
      viewers: room.viewers,
      peak: room.peak,
      likes: room.likes,
      host: null,
      pinned: null,
      recent_chat: [],
      members: null,
    };
    this.send(conn, JSON.stringify({ type: resuming ? 'resync' : 'joined', room: roomId, role, state }));
  }

  leaveRoom(conn, roomId) {
    const role = conn.rooms.get(roomId);
    if (role === undefined) return;
    conn.rooms.delete(roomId);
    const room = this.rooms.get(roomId);
    this.onLeave(conn, roomId);
    if (room === undefined) return;
    room.members.delete(conn);
    if (role === 'viewer') room.viewers--;
    if (room.members.size === 0) {
      // Unloaded at once (livecamp waits 30 s): the next joiner starts a fresh room as its host.
      this.rooms.delete(roomId);
      this.dirtyRooms.delete(room);
    } else {
      this.markDirty(room);
    }
  }

  chat(conn, reqId, roomId, raw) {
    const role = conn.rooms.get(roomId);
    if (role === undefined) return this.error(conn, reqId, 'not_in_room', '请先进入直播间');
    const text = raw.replace(CONTROL_CHARS, '').trim();
    if (text.length === 0) return this.error(conn, reqId, 'empty_text', '消息不能为空');
    if (charCount(text) > MAX_CHAT_CHARS) return this.error(conn, reqId, 'text_too_long', '消息不能超过 200 个字');
    const room = this.rooms.get(roomId);
    const seq = ++room.seq;
    const at = Date.now();
    // Encoded once; the same text goes to every member, the sender included.
    const wire = JSON.stringify({
      type: 'event',
      room: roomId,
      seq,
      at,
      event: { kind: 'chat', message: { id: seq, user: conn.user, role, text, at } },
    });
    this.broadcast(room, wire);
    this.ack(conn, reqId);
  }

  like(conn, reqId, roomId, count) {
    if (!conn.rooms.has(roomId)) return this.error(conn, reqId, 'not_in_room', '请先进入直播间');
    if (count < 1 || count > 500) return this.error(conn, reqId, 'invalid', '点赞数须在 1–500 之间');
    const room = this.rooms.get(roomId);
    room.likes += count;
    this.markDirty(room);
    this.ack(conn, reqId);
  }

  markDirty(room) {
    if (!room.dirty) {
      room.dirty = true;
      this.dirtyRooms.add(room);
    }
  }

  flushStats() {
    if (this.dirtyRooms.size === 0) return;
    const now = Date.now();
    for (const room of this.dirtyRooms) {
      if (now - room.lastStatsAt < room.statsIntervalMs()) continue;
      room.dirty = false;
      room.lastStatsAt = now;
      this.dirtyRooms.delete(room);
      this.broadcast(
        room,
        JSON.stringify({ type: 'stats', room: room.id, viewers: room.viewers, peak: room.peak, likes: room.likes }),
      );
    }
  }
}

/** The token of an upgrade request: `Authorization: Bearer …`, else `?token=…` taken literally. */
export function tokenOf(url, headers) {
  const auth = headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7);
  const q = url.indexOf('?');
  if (q === -1) return null;
  for (const pair of url.slice(q + 1).split('&')) {
    if (pair.startsWith('token=')) return pair.slice(6);
  }
  return null;
}

/** Calls `stop` on SIGTERM/SIGINT, then exits 0 (or after 2 s at the latest). */
export function onShutdown(stop) {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 2000).unref();
    Promise.resolve()
      .then(stop)
      .then(
        () => process.exit(0),
        () => process.exit(0),
      );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
