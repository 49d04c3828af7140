// livecamp's hub protocol on a bare `ws` server: ws://HOST:PORT/ws?token=ANY
// A comparison peer for the hub fan-out benchmark (README.md, docs/benchmarks.md).
import { WebSocket, WebSocketServer } from 'ws';
import { Hub, onShutdown, tokenOf } from './hub.mjs';

const port = Number(process.env.PORT ?? 18501);
const host = process.env.HOST || undefined; // unset: every interface, like ws's default
const TEXT = { binary: false };
const sockets = new Set();

const hub = new Hub({
  send(conn, text) {
    if (conn.transport.readyState === WebSocket.OPEN) conn.transport.send(text);
  },
  broadcast(room, text) {
    // Encoded once: one UTF-8 buffer, written as a text frame to every member without copying.
    const wire = Buffer.from(text);
    for (const conn of room.members) {
      const ws = conn.transport;
      if (ws.readyState === WebSocket.OPEN) ws.send(wire, TEXT);
    }
  },
});

const wss = new WebSocketServer({
  port,
  host,
  path: '/ws',
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 16384,
});

wss.on('connection', (ws, req) => {
  sockets.add(ws);
  const conn = hub.connect(tokenOf(req.url, req.headers), ws);
  ws.on('message', (data, isBinary) => {
    if (isBinary) hub.binary(conn);
    else hub.handle(conn, data.toString());
  });
  ws.on('error', () => {}); // e.g. a frame over maxPayload: ws closes with 1009 itself
  ws.on('close', () => {
    sockets.delete(ws);
    hub.disconnect(conn);
  });
});

wss.on('listening', () => console.log(`listening on ${wss.address().port}`));
wss.on('error', (e) => {
  console.error(`ws-server: ${e.message}`);
  process.exit(1);
});

onShutdown(
  () =>
    new Promise((resolve) => {
      hub.stop();
      for (const ws of sockets) ws.close(1001, 'server shutting down');
      // Give the close frames a moment, then drop whatever is left.
      setTimeout(() => {
        for (const ws of sockets) ws.terminate();
        wss.close(() => resolve());
      }, 100);
    }),
);
