// The loadtest protocol (the /bench protocol, src/handlers/bench.rs) end to end with the real socket.io-client,
// against any server that speaks it: the Node reference server (reference-server.mjs) or
// realtime-server started with --loadtest-namespace. Driven by tests/it/reference_server.rs.
//
//   BENCH_TOKEN_A=… BENCH_TOKEN_B=… BENCH_USER_B=… RT_SERVICE_TOKEN=… [BENCH_URL_B=…] \
//     node bench-flow.mjs <server-url> [default|websocket|polling]
//
// Client A uses <server-url>; client B uses BENCH_URL_B when set (another node of the same
// cluster: then every delivery below crosses the Redis adapter), else <server-url> too.
// The API call always goes to <server-url>, so with two nodes `delivered` (this node's
// sockets) is 0 and the notification still reaches B through the cluster.
//
// Checks: handshake auth (refusals carry {message: "unauthorized", data: {reason}}); /bench
// join acks and argument errors; publish reaches the other member of the room and not the
// sender, with and without an ack; POST /api/notifications → 201 {id, createdAt, delivered}
// and `notification:new` on the user's /notifications socket; a wrong service token → 401.

import { Manager } from "socket.io-client";
import { check, clientOptions, connected, expectEqual, log, next, request, run, sleep } from "./lib.mjs";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name} (see the header of bench-flow.mjs)`);
  return value;
}

/** A socket on `nsp` of its own engine connection, authenticated with `token` (or none). */
function socketFor(url, transport, nsp, token) {
  const auth = token === undefined ? {} : { token };
  return new Manager(url, { autoConnect: false, ...clientOptions(transport) }).socket(nsp, { auth });
}

/** Resolves with the connect_error a refused socket gets. */
function refusal(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => reject(new Error(`${socket.nsp}: connected without a valid token`)));
    socket.once("connect_error", (err) => resolve({ message: err.message, data: err.data }));
    socket.connect();
  });
}

/** Resolves true when `event` arrives on `socket` within `ms`, false otherwise. */
function arrives(socket, event, ms) {
  return next(socket, event, ms).then(
    () => true,
    () => false,
  );
}

/** Every field of `expected` is deep-equal in `actual` (servers may add fields). */
function expectFields(actual, expected, what) {
  const picked = Object.fromEntries(Object.keys(expected).map((k) => [k, actual?.[k]]));
  expectEqual(picked, expected, what);
}

run(async ({ url, transport }) => {
  const tokenA = env("BENCH_TOKEN_A");
  const tokenB = env("BENCH_TOKEN_B");
  const userB = env("BENCH_USER_B");
  const serviceToken = env("RT_SERVICE_TOKEN");
  const urlB = process.env.BENCH_URL_B || url;
  log(`A on ${url}, B on ${urlB}`);
  const open = [];

  // Auth: no token, a token sealed with another secret.
  const none = socketFor(url, transport, "/bench");
  open.push(none.io);
  expectEqual(await refusal(none), { message: "unauthorized", data: { reason: "missing_token" } }, "no token refused");
  const forged = socketFor(url, transport, "/bench", `${tokenA.slice(0, -4)}AAAA`);
  open.push(forged.io);
  const forgedRefusal = await refusal(forged);
  check(forgedRefusal.message === "unauthorized", `a tampered token is refused (${forgedRefusal.data?.reason})`);

  const a = await connected(socketFor(url, transport, "/bench", tokenA), "/bench as A");
  const b = await connected(socketFor(urlB, transport, "/bench", tokenB), "/bench as B");
  open.push(a.io, b.io);

  // join: acks and argument errors.
  expectEqual(await request(a, "join", { room: "r1" }), [{ ok: true }], "A joins r1");
  expectEqual(await request(b, "join", { room: "r1" }), [{ ok: true }], "B joins r1");
  for (const bad of [{ room: "" }, { room: "x".repeat(65) }, { room: 7 }, "r1"]) {
    const [answer] = await request(a, "join", bad);
    check(answer?.error === "invalid" && typeof answer.message === "string", `join ${JSON.stringify(bad)} → invalid`);
  }
  const [badPublish] = await request(a, "publish", { seq: 0 });
  check(badPublish?.error === "invalid", "publish without a room → invalid");

  // publish with an ack: B gets the same object, A (the sender) does not.
  const first = { room: "r1", seq: 1, sentAt: Date.now() + 0.25, from: 0 };
  const toB = next(b, "message");
  const echoToA = arrives(a, "message", 500);
  expectEqual(await request(a, "publish", first), [{ ok: true }], "publish acked");
  expectEqual(await toB, [first], "B receives the published object");
  check(!(await echoToA), "the sender does not receive its own publish");

  // publish without an ack, the other way round.
  const second = { room: "r1", seq: 2, sentAt: Date.now(), from: 1, pad: "p".repeat(100) };
  const toA = next(a, "message");
  b.emit("publish", second);
  expectEqual(await toA, [second], "A receives B's unacknowledged publish");

  // A room nobody joined stays silent.
  const [other] = await request(a, "publish", { room: "r2", seq: 3 });
  expectEqual(other, { ok: true }, "publish to an empty room acked");
  check(!(await arrives(b, "message", 300)), "B gets nothing for a room it is not in");

  // The API path: POST /api/notifications reaches B's /notifications socket.
  const inbox = await connected(socketFor(urlB, transport, "/notifications", tokenB), "/notifications as B");
  open.push(inbox.io);
  const api = new URL("/api/notifications", url);
  const payload = {
    userId: userB,
    type: "bench",
    title: "hello",
    body: "from bench-flow",
    data: { seq: 7, sentAt: Date.now() },
  };
  const post = (headers) =>
    fetch(api, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(payload),
    });
  const wrong = await post({ authorization: "Bearer not-the-token" });
  expectEqual(wrong.status, 401, "a wrong service token → 401");
  expectEqual((await wrong.json()).error, "unauthorized", "401 body names the error");

  const incomplete = await fetch(api, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${serviceToken}` },
    body: JSON.stringify({ type: "bench", title: "no user" }),
  });
  expectEqual([incomplete.status, (await incomplete.json()).error], [400, "invalid_input"], "no userId → 400 invalid_input");

  const pushed = next(inbox, "notification:new");
  const res = await post({ authorization: `Bearer ${serviceToken}` });
  expectEqual(res.status, 201, "POST /api/notifications → 201");
  const created = await res.json();
  check(created.id !== undefined && typeof created.createdAt === "string", `201 body has id and createdAt (${JSON.stringify(created)})`);
  const local = urlB === url ? 1 : 0;
  expectEqual(created.delivered, local, `delivered counts the sockets on the API's node (${local})`);
  const [notification] = await pushed;
  expectFields(
    notification,
    { ...payload, id: created.id, status: "unread", createdAt: created.createdAt },
    "notification:new carries the notification",
  );
  log(`notification:new ${JSON.stringify(notification)}`);

  // Health and metrics answer the way the loadtest reads them, on every node.
  for (const node of new Set([url, urlB])) {
    const health = await fetch(new URL("/api/health", node));
    expectEqual(health.status, 200, `GET ${node}/api/health → 200`);
    const scrape = await (await fetch(new URL("/metrics", node))).text();
    for (const family of ["process_resident_memory_bytes", "process_cpu_seconds_total"]) {
      const line = scrape.split("\n").find((l) => l.startsWith(family));
      const value = Number(line?.split(/\s+/).pop());
      check(Number.isFinite(value) && value > 0, `${node}/metrics has ${family} (${value})`);
    }
  }

  await sleep(50);
  return open;
});
