// Generates tests/interop/fixtures/redis-sharded-8.3.0.json: the bytes the real
// createShardedAdapter of @socket.io/redis-adapter 8.3.0 (with socket.io 4.8 and
// node-redis 4) SPUBLISHes, for the unit tests of src/protocol/cluster_adapter.rs.
//
//   redis-server --port 6392 --save '' &
//   node tests/interop/sharded-fixtures.mjs redis://127.0.0.1:6392 [out.json]
//
// Two servers A and B on one Redis 7 in the default "dynamic" subscription mode, one
// client on each (client A in room1). Both servers' SPUBLISH calls are recorded as they
// hand them to Redis (no pattern form of SSUBSCRIBE exists, and a spy subscribed to a
// namespace channel would count as a server). Each step records what it called (so a
// test can make the same call on our codec) and every message that went out: channel,
// bytes (hex) and, for JSON, the text. Ids (uids, request ids, sids) are random: the
// tests take them from the fixture.

import { writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:http";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const here = dirname(fileURLToPath(import.meta.url));
const [redisUrl, out = join(here, "fixtures", "redis-sharded-8.3.0.json")] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const redis = createClient({ url: redisUrl });
await redis.connect();
await redis.flushAll();

// Every SPUBLISH of both servers, as handed to Redis: the channel and the bytes (a
// string goes out as its UTF-8). No spy subscribes: it would count as a server.
const seen = [];

async function server(name) {
  const pub = redis.duplicate();
  const sub = redis.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const sPublish = pub.sPublish.bind(pub);
  pub.sPublish = (channel, payload) => {
    const bytes = Buffer.from(payload);
    const entry = { channel, hex: bytes.toString("hex") };
    if (typeof payload === "string") entry.text = payload;
    seen.push(entry);
    return sPublish(channel, payload);
  };
  const http = createServer();
  const io = new Server(http, { adapter: createShardedAdapter(pub, sub) });
  io.of("/chat");
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  return { io, port: http.address().port, pub, sub, name };
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

const uids = {
  A: A.io.of("/").adapter.uid,
  B: B.io.of("/").adapter.uid,
  A_chat: A.io.of("/chat").adapter.uid,
};

await sleep(200);
// What dynamic mode subscribed: the namespace and response channels, room1 (client A is
// in it on A), not the socket-id rooms.
const shardChannels = (await redis.sendCommand(["PUBSUB", "SHARDCHANNELS"])).sort();

const steps = [];
let consumed = seen.length;
async function step(name, call, run) {
  await Promise.resolve(run()).catch((e) => console.error(name, e.message));
  await sleep(150);
  steps.push({ name, call, messages: seen.slice(consumed) });
  consumed = seen.length;
}

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
await step("two-rooms", { event: "two", args: [], rooms: ["room1", "room2"] }, () =>
  A.io.to("room1").to("room2").emit("two"),
);
await step("socket-id-room", { event: "direct", args: ["to-B-only"], rooms: [b.socket.id] }, () =>
  A.io.to(b.socket.id).emit("direct", "to-B-only"),
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
await step(
  "broadcast-with-binary-ack",
  { op: "emitWithAck", event: "withbin", args: [], rooms: [b.socket.id], flags: { timeout: 2000 } },
  () => A.io.to(b.socket.id).timeout(2000).emitWithAck("withbin"),
);
const serverCount = await A.io.of("/").adapter.serverCount();

mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  JSON.stringify(
    {
      generator: "tests/interop/sharded-fixtures.mjs",
      package: "@socket.io/redis-adapter@8.3.0 createShardedAdapter (subscriptionMode dynamic)",
      uids,
      sids: { a: a.socket.id, b: b.socket.id },
      shardChannels,
      serverCount,
      steps,
    },
    null,
    2,
  ) + "\n",
);
console.log(`wrote ${out}: ${steps.length} steps`);
a.c.close();
b.c.close();
A.io.close();
B.io.close();
process.exit(0);
