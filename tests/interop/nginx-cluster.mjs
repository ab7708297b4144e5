// Issue 6, end to end: the real socket.io-client talks to a cluster of realtime-server
// nodes (one Redis, one PostgreSQL) through the nginx config `rtctl gen nginx` wrote, and
// proves that config works:
//
// - stickiness: every request of a session reaches the node that holds it. With
//   `hash $remote_addr consistent`, a client's node is a function of its source address, so
//   the script first asks nginx's `/api/health/live` (same upstream hash) from 127.0.0.1,
//   127.0.0.2, … which node answers, and keeps two addresses per node. A request that
//   reached another node would be refused with "Session ID unknown" (400), the client
//   would see a disconnect, and this script fails;
// - the cluster: user alice and user bob each hold a socket on every node, all in one
//   1:1 chat room; every socket in turn sends `message:send`, and the five others, on
//   all nodes, must receive it as `message:new` (through the Redis adapter);
// - a long enough exchange: several rounds spread over a few seconds, so the heartbeat
//   (server ping, client pong) also crosses nginx several times per session.
//
// Usage: NEXTAUTH_SECRET=… node nginx-cluster.mjs <nginx-url> <default|websocket|polling>
// Env: E2E_NODES (default 3), E2E_ROUNDS (default 6). The nodes must run with a
// `message:send` rate limit above 2 × E2E_ROUNDS per user.
// Prints `landed <user> <node> <source>` per socket and `summary {json}` at the end.

import http from "node:http";
import { encode } from "next-auth/jwt";
import { check, expectEqual, log, manager, request, show, sleep, run } from "./lib.mjs";

const secret = process.env.NEXTAUTH_SECRET;
const NODES = Number(process.env.E2E_NODES ?? 3);
const ROUNDS = Number(process.env.E2E_ROUNDS ?? 6);
/** Source addresses tried when looking for two per node (127.0.0.0/8 is all loopback). */
const MAX_SOURCES = 200;

/** The node id behind nginx for `source`: GET /api/health/live from that address. */
function nodeFor(url, source) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}/api/health/live`, { localAddress: source, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => {
        try {
          const node = JSON.parse(body).node;
          if (res.statusCode !== 200 || typeof node !== "string") throw new Error(`status ${res.statusCode}`);
          resolve(node);
        } catch (err) {
          reject(new Error(`GET /api/health/live from ${source}: ${err.message}: ${show(body)}`));
        }
      });
    });
    req.setTimeout(3000, () => req.destroy(new Error(`GET /api/health/live from ${source}: timeout`)));
    req.on("error", reject);
  });
}

/** Two source addresses per node: `Map(node → [source, source])`. */
async function sourcesPerNode(url) {
  const found = new Map();
  const enough = () => found.size === NODES && [...found.values()].every((s) => s.length >= 2);
  for (let i = 1; i <= MAX_SOURCES && !enough(); i++) {
    const source = `127.0.0.${i}`;
    const node = await nodeFor(url, source);
    const list = found.get(node) ?? [];
    if (list.length < 2) list.push(source);
    found.set(node, list);
  }
  check(
    enough(),
    `nginx spreads source addresses over all ${NODES} nodes: ${show(Object.fromEntries(found))}`,
  );
  return found;
}

const tokenFor = (user) =>
  encode({ token: { name: user, email: `${user}@example.com`, sub: user }, secret, maxAge: 3600 });

async function main({ url, transport }) {
  if (!secret) throw new Error("NEXTAUTH_SECRET must be set (the nodes' secret)");
  const tag = `${transport}-${process.pid}`;
  const users = { alice: `alice-${tag}`, bob: `bob-${tag}` };
  const perNode = await sourcesPerNode(url);

  // One alice and one bob socket on every node, each from a source address nginx sends there.
  const clients = [];
  const problems = [];
  for (const [node, [aliceSource, bobSource]] of perNode) {
    for (const [who, source] of [
      ["alice", aliceSource],
      ["bob", bobSource],
    ]) {
      const agent = new http.Agent({ localAddress: source, keepAlive: true });
      const m = manager(url, transport, { agent, localAddress: source });
      const socket = m.socket("/chat", { auth: { token: await tokenFor(users[who]) } });
      const client = { who, node, source, manager: m, socket, agent, received: [], pings: 0 };
      m.on("ping", () => client.pings++);
      socket.on("message:new", (msg) => client.received.push(msg.text));
      clients.push(client);
    }
  }
  await Promise.all(
    clients.map(
      (c) =>
        new Promise((resolve, reject) => {
          c.socket.once("connect", resolve);
          c.socket.once("connect_error", (err) =>
            reject(new Error(`${c.who}@${c.node} from ${c.source}: connect_error ${err.message} ${show(err.data)}`)),
          );
          c.socket.connect();
        }),
    ),
  );
  // From now on any disconnect (a request that hit the wrong node, a cut heartbeat) fails.
  for (const c of clients) {
    c.socket.on("disconnect", (reason, details) =>
      problems.push(`${c.who}@${c.node} from ${c.source} disconnected: ${reason} ${show(details?.message ?? "")}`),
    );
    c.manager.on("error", (err) => problems.push(`${c.who}@${c.node}: manager error ${err.message}`));
  }
  if (transport === "default") {
    // Polling first, then the upgrade: the WebSocket must reach the same node too.
    await Promise.all(
      clients.map((c) =>
        c.manager.engine.transport.name === "websocket"
          ? null
          : new Promise((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error(`${c.who}@${c.node}: no upgrade within 5 s`)), 5000);
              c.manager.engine.once("upgrade", () => (clearTimeout(timer), resolve()));
            }),
      ),
    );
  }
  const want = transport === "polling" ? "polling" : "websocket";
  for (const c of clients) {
    log(`landed ${c.who} ${c.node} ${c.source} transport=${c.manager.engine.transport.name}`);
    expectEqual(c.manager.engine.transport.name, want, `${c.who}@${c.node} transport`);
  }

  // alice (on the first node) opens the room; everyone else joins it.
  const [opener, ...others] = clients;
  const [opened] = await request(opener.socket, "room:open", { peerId: users.bob });
  const roomId = opened?.roomId;
  check(Number.isInteger(roomId), `room:open answered a room id: ${show(opened)}`);
  for (const c of others) {
    const [joined] = await request(c.socket, "room:join", { roomId });
    expectEqual(joined, { ok: true, roomId }, `${c.who}@${c.node} joined room ${roomId}`);
  }

  const started = Date.now();
  let sent = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const sender of clients) {
      const text = `round ${round} from ${sender.who}@${sender.node}`;
      const [ack] = await request(sender.socket, "message:send", { roomId, text });
      if (!Number.isInteger(ack?.id)) throw new Error(`message:send by ${sender.who}@${sender.node}: ${show(ack)}`);
      sent++;
      // Every other socket, on every node, receives it; the sender does not (socket.to).
      const deadline = Date.now() + 3000;
      for (const c of clients) {
        if (c === sender) continue;
        while (!c.received.includes(text)) {
          if (Date.now() > deadline) {
            throw new Error(`${c.who}@${c.node} did not receive "${text}" (sent on ${sender.node}) within 3 s`);
          }
          await sleep(5);
        }
      }
      if (problems.length) throw new Error(problems.join("; "));
    }
    await sleep(300);
  }
  for (const c of clients) {
    expectEqual(c.received.length, sent - ROUNDS, `${c.who}@${c.node} received every message but its own`);
  }
  const [history] = await request(opener.socket, "message:history", { roomId, limit: 100 });
  expectEqual(history?.messages?.length, sent, "history holds every message sent (one database)");
  const elapsedMs = Date.now() - started;
  const pings = clients.map((c) => c.pings);
  check(
    pings.every((n) => n >= 2),
    `every session saw at least 2 heartbeats through nginx over ${elapsedMs} ms: ${show(pings)}`,
  );
  if (problems.length) throw new Error(problems.join("; "));
  const nodes = Object.fromEntries([...perNode].map(([node, sources]) => [node, sources]));
  log(`summary ${JSON.stringify({ transport, sent, deliveries: sent * (clients.length - 1), elapsedMs, nodes })}`);
  for (const c of clients) c.agent.destroy();
  return clients.map((c) => c.manager.engine);
}

run(main, { timeoutMs: Number(process.env.INTEROP_TIMEOUT_MS) || 40000 });
