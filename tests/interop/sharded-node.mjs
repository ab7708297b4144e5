// A real Node socket.io 4.8 server on createShardedAdapter of @socket.io/redis-adapter
// 8.3.0, as one node of a mixed cluster with realtime-server nodes on
// `--adapter redis-sharded` (driven by tests/it/sharded.rs).
//
//   node sharded-node.mjs <port> <redis-url> [subscriptionMode, default "dynamic"]
//
// A <redis-url> of `cluster:host:port,host:port,…` connects to a Redis Cluster instead
// (node-redis `createCluster`, as the package's README shows for a cluster).
//
// Prints `listening <port>` once its subscriptions are confirmed. Clients drive it with
// events:
// - `join` (room) → acks true;  `to-room` (room, event, ...args) → socket.to(room).emit;
// - `admin` (command, ...args) → runs a server-side call and acks {ok, ...}:
//   socketsJoin(room, target?), socketsLeave(room, target?), disconnectSockets(room),
//   serverSideEmit(event, ...args) (with ack), fetchSockets(), emitToRoom(room, event,
//   ...args) and emit(event, ...args) (a Buffer for {"$binary": [bytes]}), rooms(sid),
//   emitWithAck(room, event, ...args) (every client's answer, 3 s), serverCount().
// Server-side event `ping` answers {from: "node", args}.

import { createServer } from "node:http";
import { Server } from "socket.io";
import { createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient, createCluster } from "redis";

const [port, redisUrl, subscriptionMode = "dynamic"] = process.argv.slice(2);
const pub = redisUrl.startsWith("cluster:")
  ? createCluster({
      rootNodes: redisUrl
        .slice("cluster:".length)
        .split(",")
        .map((a) => ({ url: `redis://${a}` })),
    })
  : createClient({ url: redisUrl });
const sub = pub.duplicate();
for (const c of [pub, sub]) c.on("error", (e) => console.error("redis", e.message));
await Promise.all([pub.connect(), sub.connect()]);
const http = createServer();
const io = new Server(http, { adapter: createShardedAdapter(pub, sub, { subscriptionMode }) });
const arg = (a) => (a && a.$binary ? Buffer.from(a.$binary) : a);
const plain = (a) => (a instanceof Uint8Array ? { $binary: [...a] } : a);

io.on("ping", (...args) => {
  const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
  if (ack) ack({ from: "node", args });
});

const commands = {
  socketsJoin: (room, target) => (target ? io.in(target) : io).socketsJoin(room),
  socketsLeave: (room, target) => (target ? io.in(target) : io).socketsLeave(room),
  disconnectSockets: (room) => io.in(room).disconnectSockets(false),
  serverSideEmit: async (...args) => ({ responses: await io.serverSideEmitWithAck(...args) }),
  fetchSockets: async () => {
    const sockets = await io.fetchSockets();
    return { sockets: sockets.map((s) => ({ id: s.id, data: s.data, rooms: [...s.rooms] })) };
  },
  emitToRoom: (room, event, ...rest) => io.to(room).emit(event, ...rest.map(arg)),
  emit: (event, ...rest) => io.emit(event, ...rest.map(arg)),
  emitWithAck: async (room, event, ...rest) => ({
    responses: (await io.to(room).timeout(3000).emitWithAck(event, ...rest)).map(plain),
  }),
  rooms: (sid) => ({ rooms: [...(io.sockets.sockets.get(sid)?.rooms ?? [])] }),
  serverCount: async () => ({ count: await io.of("/").adapter.serverCount() }),
};

io.on("connection", (socket) => {
  socket.data = { runtime: "node" };
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack?.(true);
  });
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

// The adapter's SSUBSCRIBEs are not awaited: wait until Redis counts this server (the
// adapter's own count, summed over a cluster's masters).
for (let i = 0; i < 100; i++) {
  if ((await io.of("/").adapter.serverCount()) > 0) break;
  await new Promise((r) => setTimeout(r, 20));
}
http.listen(Number(port), "127.0.0.1", () => console.log(`listening ${port}`));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
