// Generates tests/interop/fixtures/redis-streams-0.3.1.json: the bytes the real
// @socket.io/redis-streams-adapter 0.3.1 (with socket.io 4.8 and node-redis 4) writes to
// Redis, for the unit tests of src/protocol/cluster_streams.rs.
//
//   redis-server --port 6391 --save '' &
//   node tests/interop/streams-fixtures.mjs redis://127.0.0.1:6391 [out.json]
//
// Two servers A and B on one Redis, connection state recovery on, one client on each
// (client A in room1 with socket.data {user: "alice"}). Each scenario step records what
// it called (so a test can make the same call on our codec) and what went to Redis:
// stream entries (XRANGE: id and fields uid/nsp/type/data), pub/sub payloads (hex, from a
// PSUBSCRIBE spy) and session values (GET). Ids (uids, request ids, entry ids, sids) are
// random: the tests take them from the fixture.

import { writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:http";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createAdapter } from "@socket.io/redis-streams-adapter";
import { hashCode } from "@socket.io/redis-streams-adapter/dist/util.js";
import { createClient } from "redis";

const here = dirname(fileURLToPath(import.meta.url));
const [redisUrl, out = join(here, "fixtures", "redis-streams-0.3.1.json")] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const redis = createClient({ url: redisUrl });
await redis.connect();
await redis.flushAll();

// Every pub/sub message, raw.
const spy = redis.duplicate();
await spy.connect();
const pubsub = [];
await spy.pSubscribe("*", (msg, channel) => pubsub.push({ channel: channel.toString(), hex: msg.toString("hex") }), true);

async function server(name) {
  const client = redis.duplicate();
  await client.connect();
  const http = createServer();
  const io = new Server(http, {
    adapter: createAdapter(client),
    connectionStateRecovery: { maxDisconnectionDuration: 60_000 },
  });
  io.of("/chat");
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  return { io, port: http.address().port, client, name };
}

const A = await server("A");
const B = await server("B");
B.io.on("ping", (...args) => {
  const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
  ack?.("pong-from-B");
});

async function client(srv, setup) {
  const connected = new Promise((r) => srv.io.once("connection", r));
  const c = connect(`http://127.0.0.1:${srv.port}`, { transports: ["websocket"], reconnection: false });
  const socket = await connected;
  setup?.(socket);
  await new Promise((r) => (c.connected ? r() : c.once("connect", r)));
  return { c, socket };
}
const a = await client(A, (s) => {
  s.join("room1");
  s.data = { user: "alice" };
});
const b = await client(B);
a.c.on("withack", (x, ack) => ack("ack-from-client-A"));
b.c.on("withack", (x, ack) => ack("ack-from-client-B"));
b.c.on("withbin", (ack) => ack(Buffer.from([0xca, 0xfe])));
await sleep(300); // the XREAD loops start at "$"

const steps = [];
let seenEntries = 0;
let seenPubsub = 0;
async function step(name, call, run) {
  await Promise.resolve(run()).catch((e) => console.error(name, e.message));
  await sleep(150);
  const all = await redis.xRange("socket.io", "-", "+");
  const entries = all.slice(seenEntries).map((e) => ({ id: e.id, ...e.message }));
  seenEntries = all.length;
  const messages = pubsub.slice(seenPubsub);
  seenPubsub = pubsub.length;
  steps.push({ name, call, entries, pubsub: messages });
}

const uids = { A: A.io.of("/").adapter.uid, B: B.io.of("/").adapter.uid, A_chat: A.io.of("/chat").adapter.uid };

await step("plain", { event: "plain", args: ["hello", { a: 1 }] }, () => A.io.emit("plain", "hello", { a: 1 }));
await step(
  "binary",
  { event: "binary", args: [{ $binary: [1, 2, 3] }, "x"], rooms: ["room1"], except: ["room2"] },
  () => A.io.to("room1").except("room2").emit("binary", Buffer.from([1, 2, 3]), "x"),
);
await step(
  "nested-binary",
  { event: "nested", args: [{ k: { $binary: [7, 8] }, list: [{ $binary: [9] }, 300, -7, -40000] }, 1.5, null, "é"] },
  () => A.io.emit("nested", { k: Buffer.from([7, 8]), list: [Buffer.from([9]), 300, -7, -40000] }, 1.5, null, "é"),
);
await step(
  "json-text",
  { event: "text", args: ["é\u0001\"\\/\n\t", 1.5, -7, 2 ** 40, null, true, { nested: { a: [] } }] },
  () => A.io.emit("text", "é\u0001\"\\/\n\t", 1.5, -7, 2 ** 40, null, true, { nested: { a: [] } }),
);
await step("volatile", { event: "vol", args: [42], flags: { volatile: true } }, () => A.io.volatile.emit("vol", 42));
await step("socket-emit", { event: "direct", args: ["to-A-only"], rooms: [a.socket.id] }, () =>
  a.socket.emit("direct", "to-A-only"),
);
await step("chat", { nsp: "/chat", event: "c", args: [1], rooms: ["r"] }, () => A.io.of("/chat").to("r").emit("c", 1));
await step("sockets-join", { op: "socketsJoin", rooms: ["room3"] }, () => A.io.socketsJoin("room3"));
await step("sockets-leave", { op: "socketsLeave", in: ["room1"], rooms: ["room3"] }, () =>
  A.io.in("room1").socketsLeave("room3"),
);
await step("disconnect-sockets", { op: "disconnectSockets", in: ["nobody-room"], except: ["x"], close: true }, () =>
  A.io.in("nobody-room").except("x").disconnectSockets(true),
);
await step("server-side-emit", { op: "serverSideEmit", event: "ping", args: [1] }, () => A.io.serverSideEmit("ping", 1));
await step("server-side-emit-with-ack", { op: "serverSideEmitWithAck", event: "ping", args: [2] }, () =>
  A.io.serverSideEmitWithAck("ping", 2),
);
await step("fetch-sockets", { op: "fetchSockets" }, () => A.io.fetchSockets());
await step("broadcast-with-ack", { op: "emitWithAck", event: "withack", args: ["q"], flags: { timeout: 2000 } }, () =>
  A.io.timeout(2000).emitWithAck("withack", "q"),
);
await step("broadcast-with-binary-ack", { op: "emitWithAck", event: "withbin", args: [], rooms: [b.socket.id], flags: { timeout: 2000 } }, () =>
  A.io.to(b.socket.id).timeout(2000).emitWithAck("withbin"),
);
const serverCount = await A.io.of("/").adapter.serverCount();

// Sessions: client A (room1, data) and client B (defaults) drop their transport.
const sessions = [];
for (const [c, socket] of [[a.c, a.socket], [b.c, b.socket]]) {
  const pid = c._pid;
  const rooms = [...socket.rooms];
  c.io.engine.close();
  await sleep(200);
  const key = "sio:session:" + pid;
  sessions.push({ sid: socket.id, pid, rooms, data: socket.data, key, value: await redis.get(key), pttl: await redis.pTTL(key) });
}

const hashes = {};
for (const nsp of ["/", "/chat", "/notifications", "/admin", "/bench", "/é", "/😀", "/a-very-long-namespace-name-that-wraps"]) {
  hashes[nsp] = hashCode(nsp);
}

mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  JSON.stringify(
    {
      generator: "tests/interop/streams-fixtures.mjs",
      package: "@socket.io/redis-streams-adapter@0.3.1",
      uids,
      serverCount,
      steps,
      sessions,
      hashes,
    },
    null,
    2,
  ) + "\n",
);
console.log(`wrote ${out}: ${steps.length} steps, ${sessions.length} sessions`);
a.c.close();
b.c.close();
A.io.close();
B.io.close();
process.exit(0);
