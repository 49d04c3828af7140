// livecamp's hub protocol over socket.io v4: ws://HOST:PORT/socket.io/?EIO=4&transport=websocket
// Each protocol frame is the single string argument of a socket.io event named "m", both ways.
// A comparison peer for the hub fan-out benchmark (README.md, docs/benchmarks.md).
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { Hub, onShutdown, tokenOf } from './hub.mjs';

const port = Number(process.env.PORT ?? 18502);
const host = process.env.HOST || undefined; // unset: every interface, like Node's default

const httpServer = createServer();
const io = new Server(httpServer, {
  path: '/socket.io',
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
  maxHttpBufferSize: 16384,
});

const hub = new Hub({
  send(conn, text) {
    conn.transport.emit('m', text);
  },
  broadcast(room, text) {
    // socket.io's own broadcast: the packet is encoded once for the whole room.
    io.to('room:' + room.id).emit('m', text);
  },
  onJoin(conn, roomId) {
    conn.transport.join('room:' + roomId);
  },
  onLeave(conn, roomId) {
    conn.transport.leave('room:' + roomId);
  },
});

io.on('connection', (socket) => {
  // Token: the CONNECT packet's auth (`40{"token":"…"}`), else the upgrade's Bearer header or ?token=.
  const auth = socket.handshake.auth;
  const token =
    auth && typeof auth.token === 'string' ? auth.token : tokenOf(socket.request.url, socket.request.headers);
  const conn = hub.connect(token, socket);
  socket.on('m', (text) => {
    if (typeof text === 'string') hub.handle(conn, text);
    else hub.binary(conn);
  });
  socket.on('disconnect', () => hub.disconnect(conn));
});

httpServer.on('error', (e) => {
  console.error(`socketio-server: ${e.message}`);
  process.exit(1);
});
httpServer.listen(port, host, () => console.log(`listening on ${httpServer.address().port}`));

onShutdown(
  () =>
    new Promise((resolve) => {
      hub.stop();
      io.disconnectSockets(true); // each client gets the DISCONNECT packet `41`, then the close
      io.close(() => resolve());
    }),
);
