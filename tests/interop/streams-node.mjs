// A real Node socket.io 4.8 server on @socket.io/redis-streams-adapter 0.3.1, as one node of
// a mixed cluster with realtime-server nodes on `--adapter redis-streams` (driven by
// tests/it/streams.rs).
//
//   node streams-node.mjs <port> <redis-url> [maxDisconnectionDuration ms: recovery on]
//
// Prints `listening <port>` once its stream reader and subscriber are up. Clients drive it
// with events:
// - `join` (room) → acks true;  `to-room` (room, event, ...args) → socket.to(room).emit;
//   `set-data` (value) → acks true;  `get-data` → acks socket.data;
// - `admin` (command, ...args) → runs a server-side call and acks {ok, ...}:
//   socketsJoin(room, target?), socketsLeave(room, target?), disconnectSockets(room),
//   serverSideEmit(event, ...args) (with ack), fetchSockets(nsp = "/"),
//   emitToRoom(room, event, ...args) (a Buffer for {"$binary": [bytes]}), rooms(sid),
//   emitWithAck(room, event, ...args) (every client's answer, 3 s), serverCount(),
//   dropSession() and restoreSession(pid, offset) (below).
// Server-side event `ping` answers {from: "node", args}.
//
// With recovery on: `dropSession` connects a socket.io-client to this server, puts its
// socket in room1 with data {user: "alice"}, has it receive one broadcast (so it holds an
// offset), then closes its transport: the adapter persists the session. It answers
// {sid, pid, offset}. `restoreSession(pid, offset)` connects a client with auth
// {pid, offset} (what a reconnecting client sends) and answers what the server made of
// it: {recovered, id, rooms, data, events: [[event, ...args], ...] received before
// `connect`}.

import { createServer } from "node:http";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createAdapter } from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";

const [port, redisUrl, recoveryMs] = process.argv.slice(2);
const redis = createClient({ url: redisUrl });
redis.on("error", (e) => console.error("redis", e.message));
await redis.connect();
const http = createServer();
const io = new Server(http, {
  adapter: createAdapter(redis),
  connectionStateRecovery: recoveryMs ? { maxDisconnectionDuration: Number(recoveryMs) } : undefined,
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const arg = (a) => (a && a.$binary ? Buffer.from(a.$binary) : a);
const plain = (a) => (a instanceof Uint8Array ? { $binary: [...a] } : a);
const url = `http://127.0.0.1:${port}`;

io.on("ping", (...args) => {
  const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
  if (ack) ack({ from: "node", args });
});

const commands = {
  socketsJoin: (room, target) => (target ? io.in(target) : io).socketsJoin(room),
  socketsLeave: (room, target) => (target ? io.in(target) : io).socketsLeave(room),
  disconnectSockets: (room) => io.in(room).disconnectSockets(false),
  serverSideEmit: async (...args) => ({ responses: await io.serverSideEmitWithAck(...args) }),
  fetchSockets: async (nsp) => {
    const sockets = await io.of(nsp ?? "/").fetchSockets();
    return { sockets: sockets.map((s) => ({ id: s.id, data: s.data, rooms: [...s.rooms] })) };
  },
  emitToRoom: (room, event, ...rest) => io.to(room).emit(event, ...rest.map(arg)),
  emitWithAck: async (room, event, ...rest) => ({
    responses: (await io.to(room).timeout(3000).emitWithAck(event, ...rest)).map(plain),
  }),
  rooms: (sid) => ({ rooms: [...(io.sockets.sockets.get(sid)?.rooms ?? [])] }),
  serverCount: async () => ({ count: await io.of("/").adapter.serverCount() }),
  dropSession: async () => {
    const joined = new Promise((resolve) =>
      io.once("connection", (socket) => {
        socket.join("room1");
        socket.data = { user: "alice" };
        resolve(socket);
      }),
    );
    const client = connect(url, { transports: ["websocket"], reconnection: false });
    const socket = await joined;
    await new Promise((r) => (client.connected ? r() : client.once("connect", r)));
    const got = new Promise((r) => client.once("before-drop", r));
    socket.emit("before-drop", 1);
    await got;
    const session = { sid: socket.id, pid: client._pid, offset: client._lastOffset };
    client.io.engine.close();
    await sleep(200);
    return session;
  },
  restoreSession: async (pid, offset) => {
    const seen = new Promise((resolve) => io.once("connection", resolve));
    const client = connect(url, { transports: ["websocket"], reconnection: false, auth: { pid, offset } });
    const events = [];
    client.onAny((...args) => events.push(args.map(plain)));
    const socket = await seen;
    await new Promise((r) => (client.connected ? r() : client.once("connect", r)));
    await sleep(100);
    const answer = { recovered: socket.recovered, id: socket.id, rooms: [...socket.rooms], data: socket.data, events };
    client.close();
    return answer;
  },
};

io.on("connection", (socket) => {
  socket.data = socket.data && Object.keys(socket.data).length ? socket.data : { runtime: "node" };
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack?.(true);
  });
  socket.on("set-data", (data, ack) => {
    socket.data = data;
    ack?.(true);
  });
  socket.on("get-data", (ack) => ack(socket.data));
  socket.on("to-room", (room, event, ...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    socket.to(room).emit(event, ...args);
    ack?.(true);
  });
  socket.on("admin", async (cmd, ...args) => {
    const ack = args.pop();
    try {
      if (!commands[cmd]) return ack({ ok: false, error: `unknown command ${cmd}` });
      ack({ ok: true, ...((await commands[cmd](...args)) ?? {}) });
    } catch (e) {
      ack({ ok: false, error: e.message });
    }
  });
});

// The stream reader starts at "$" right after connecting: give it a moment.
await sleep(300);
http.listen(Number(port), "127.0.0.1", () => console.log(`listening ${port}`));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
