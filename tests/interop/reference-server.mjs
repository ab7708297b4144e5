// The Node reference server: the yardstick `rtctl loadtest` measures realtime-server against
// (issue 7: "the same loadtest, back to back, against the Node reference server").
//
// What a team would write with the stock packages pinned in package.json: socket.io 4.8,
// @socket.io/redis-adapter 8.3 on node-redis 4 (when --redis is given), next-auth 4's own
// `decode` for the session token. It speaks the /bench loadtest protocol of
// src/handlers/bench.rs, with the same events, acks and errors as realtime-server:
//
// - every namespace authenticates `auth.token` (or `Authorization: Bearer`) as a NextAuth v4
//   JWE sealed with --secret, exactly the tokens `rtctl token` mints by default (format v4);
//   a refusal is `connect_error` {message: "unauthorized", data: {reason}};
// - `/bench`: `join {room}` → ack {ok: true} and the socket is in room `bench:<room>`;
//   `publish {room, ...}` → `message` with the same arguments to `bench:<room>` except the
//   sender (cluster-wide through the adapter), then ack {ok: true} if asked. Bad arguments
//   → ack {error: "invalid", message};
// - `/notifications`: the socket is in room `user:<sub>`;
// - `POST /api/notifications` (Bearer --service-token, JSON {userId, type, title, body, data})
//   → 201 {id, createdAt, delivered} and `notification:new` {id, userId, type, title, body,
//   data, status: "unread", createdAt} to `user:<userId>`; errors {error, message} with the
//   codes of src/handlers/api.rs (401 unauthorized, 400 invalid_input, 413 payload_too_large);
// - `GET /api/health` (and /api/health/live, /api/health/ready) → 200;
// - `GET /metrics` → `process_resident_memory_bytes` and `process_cpu_seconds_total`, the two
//   lines the loadtest reads from every server (prom-client is not installed; written by hand).
//
// THE DIFFERENCE TO OURS: notifications are NOT stored. There is no database: the id is a
// counter in this process and nothing is persisted, whereas realtime-server INSERTs each
// notification (SQLite/PostgreSQL) and reads the unread count before pushing it. So the API
// path here is a lower bound for a Node server; the /bench path is like for like.
//
// Heartbeat and limits are realtime-server's defaults (src/config.rs): pingInterval 25 s,
// pingTimeout 60 s, upgradeTimeout 10 s, maxHttpBufferSize 1e6, connectTimeout 45 s.
//
// Usage:
//   node reference-server.mjs --secret S --service-token T [--port 3001] [--host 127.0.0.1]
//                             [--redis redis://127.0.0.1:6379]
// --secret defaults to $NEXTAUTH_SECRET, --service-token to $RT_SERVICE_TOKEN (prefer the
// environment: argv shows in `ps`). --port 0 picks a free port. Prints `listening <port>`
// once it accepts connections (and, with --redis, is subscribed). SIGINT/SIGTERM close it.
// Exit status 2: bad flags; 1: could not start (port taken, Redis unreachable).

import { createServer } from "node:http";
import { timingSafeEqual } from "node:crypto";
import { parseArgs } from "node:util";
import { Server } from "socket.io";
import { decode } from "next-auth/jwt";

/** Request bodies larger than this are refused with 413 (the same limit as src/handlers/api.rs). */
const MAX_BODY_BYTES = 64 * 1024;

function usage(problem) {
  console.error(
    `reference-server: ${problem}\n` +
      "usage: node reference-server.mjs --secret S --service-token T [--port N] [--host H] [--redis URL]",
  );
  process.exit(2);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: "string", default: "3001" },
        host: { type: "string", default: "127.0.0.1" },
        redis: { type: "string" },
        secret: { type: "string" },
        "service-token": { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    usage(err.message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`--port ${values.port} is not a port number`);
  const secret = values.secret ?? process.env.NEXTAUTH_SECRET;
  if (!secret) usage("no secret: pass --secret or set NEXTAUTH_SECRET (the tokens' NEXTAUTH_SECRET)");
  const serviceToken = values["service-token"] ?? process.env.RT_SERVICE_TOKEN;
  if (!serviceToken) usage("no service token: pass --service-token or set RT_SERVICE_TOKEN");
  return { port, host: values.host, redis: values.redis, secret, serviceToken };
}

const config = options();

// ---------------------------------------------------------------- auth

/** A socket.io middleware error the client sees as connect_error {message, data}. */
function refused(reason) {
  const err = new Error("unauthorized");
  err.data = { reason };
  return err;
}

/** The token from the handshake: `auth.token`, else `Authorization: Bearer`. */
function handshakeToken(handshake) {
  if (typeof handshake.auth?.token === "string" && handshake.auth.token) return handshake.auth.token;
  const header = handshake.headers.authorization;
  if (typeof header === "string" && header.startsWith("Bearer ")) return header.slice(7);
  return null;
}

/** next-auth 4's `decode` (jose jwtDecrypt, 15 s clock tolerance); sets socket.data.userId. */
async function authenticate(socket, next) {
  const token = handshakeToken(socket.handshake);
  if (!token) return next(refused("missing_token"));
  let payload;
  try {
    payload = await decode({ token, secret: config.secret });
  } catch (err) {
    const reason =
      err?.code === "ERR_JWT_EXPIRED"
        ? "expired"
        : err?.code === "ERR_JWT_CLAIM_VALIDATION_FAILED"
          ? "invalid_claims"
          : err?.code === "ERR_JWE_INVALID"
            ? "malformed_token"
            : "decryption_failed";
    return next(refused(reason));
  }
  if (typeof payload?.sub !== "string" || !payload.sub) return next(refused("missing_subject"));
  socket.data.userId = payload.sub;
  next();
}

// ---------------------------------------------------------------- Socket.IO

const http = createServer((req, res) => {
  route(req, res).catch((err) => {
    console.error("reference-server: request failed:", err);
    if (!res.headersSent) send(res, 500, { error: "internal", message: "the request failed" });
  });
});

const io = new Server(http, {
  pingInterval: 25_000,
  pingTimeout: 60_000,
  upgradeTimeout: 10_000,
  maxHttpBufferSize: 1e6,
  connectTimeout: 45_000,
  // realtime-server's default ALLOWED_ORIGINS; clients outside a browser send no Origin.
  cors: { origin: ["http://localhost:3000"], credentials: true },
});

let redisClients = [];
if (config.redis) {
  // Imported only when used, so a run without Redis needs neither package loaded.
  const [{ createClient }, { createAdapter }] = await Promise.all([
    import("redis"),
    import("@socket.io/redis-adapter"),
  ]);
  const pub = createClient({ url: config.redis });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("reference-server: redis (pub):", e.message));
  sub.on("error", (e) => console.error("reference-server: redis (sub):", e.message));
  try {
    await Promise.all([pub.connect(), sub.connect()]);
  } catch (err) {
    console.error(`reference-server: cannot connect to Redis at ${config.redis}: ${err.message}`);
    process.exit(1);
  }
  io.adapter(createAdapter(pub, sub));
  redisClients = [pub, sub];
}

const root = io.of("/");
const bench = io.of("/bench");
const notifications = io.of("/notifications");
for (const nsp of [root, bench, notifications]) nsp.use(authenticate);

/** The validation both /bench events share: an object whose `room` is 1..=64 characters. */
function benchRoom(arg) {
  if (arg === null || typeof arg !== "object" || Array.isArray(arg)) {
    return { error: "invalid", message: "expected an object {room}" };
  }
  const { room } = arg;
  // Characters, not UTF-16 units: the same count as Rust's chars().count().
  if (typeof room !== "string" || room.length === 0 || [...room].length > 64) {
    return { error: "invalid", message: "room must be a string of 1 to 64 characters" };
  }
  return { room: `bench:${room}` };
}

/** Splits socket.io's handler arguments into (first argument, ack or null). */
function argAndAck(args) {
  const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
  return [args[0], ack];
}

bench.on("connection", (socket) => {
  socket.on("join", (...args) => {
    const [arg, ack] = argAndAck(args);
    const target = benchRoom(arg);
    if (target.error) return ack?.(target);
    socket.join(target.room);
    ack?.({ ok: true });
  });
  socket.on("publish", (...args) => {
    const [arg, ack] = argAndAck(args);
    const target = benchRoom(arg);
    if (target.error) return ack?.(target);
    socket.to(target.room).emit("message", ...args);
    ack?.({ ok: true });
  });
});

notifications.on("connection", (socket) => {
  socket.join(`user:${socket.data.userId}`);
});

// ---------------------------------------------------------------- HTTP

function send(res, status, body, type = "application/json") {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
  res.end(text);
}

function authorized(req) {
  const header = req.headers.authorization;
  if (typeof header !== "string" || !header.startsWith("Bearer ")) return false;
  const given = Buffer.from(header.slice(7));
  const expected = Buffer.from(config.serviceToken);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The body as JSON, or a {status, error, message} failure. */
async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      return { failure: [413, "payload_too_large", `the body is larger than ${MAX_BODY_BYTES} bytes`] };
    }
    chunks.push(chunk);
  }
  let value;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (err) {
    return { failure: [400, "invalid_input", `the body is not valid JSON: ${err.message}`] };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { failure: [400, "invalid_input", "the body must be a JSON object"] };
  }
  return { value };
}

let nextNotificationId = 1;

function createNotification(body) {
  for (const field of ["userId", "type", "title"]) {
    if (typeof body[field] !== "string" || !body[field]) {
      return [400, { error: "invalid_input", message: `${field} must be a non-empty string` }];
    }
  }
  if (body.body != null && typeof body.body !== "string") {
    return [400, { error: "invalid_input", message: "body must be a string" }];
  }
  const notification = {
    id: nextNotificationId++,
    userId: body.userId,
    type: body.type,
    title: body.title,
    body: body.body ?? "",
    data: body.data ?? {},
    status: "unread",
    createdAt: new Date().toISOString(),
  };
  const room = `user:${notification.userId}`;
  // This node's sockets in the room, as realtime-server counts `delivered`.
  const delivered = notifications.adapter.rooms.get(room)?.size ?? 0;
  notifications.to(room).emit("notification:new", notification);
  return [201, { id: notification.id, createdAt: notification.createdAt, delivered }];
}

function metrics() {
  const { user, system } = process.cpuUsage();
  return [
    "# HELP process_resident_memory_bytes Resident memory size in bytes.",
    "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${process.memoryUsage().rss}`,
    "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
    "# TYPE process_cpu_seconds_total counter",
    `process_cpu_seconds_total ${(user + system) / 1e6}`,
    "",
  ].join("\n");
}

async function route(req, res) {
  const path = new URL(req.url, "http://localhost").pathname;
  switch (path) {
    case "/api/health":
    case "/api/health/live":
    case "/api/health/ready":
      if (req.method !== "GET" && req.method !== "HEAD") {
        return send(res, 405, { error: "method_not_allowed", message: "use GET" });
      }
      return send(res, 200, { status: "healthy", node: "node-reference", connections: io.engine.clientsCount });
    case "/metrics":
      if (req.method !== "GET" && req.method !== "HEAD") {
        return send(res, 405, { error: "method_not_allowed", message: "use GET" });
      }
      return send(res, 200, metrics(), "text/plain; version=0.0.4; charset=utf-8");
    case "/api/notifications": {
      if (req.method !== "POST") return send(res, 405, { error: "method_not_allowed", message: "use POST" });
      if (!authorized(req)) {
        return send(res, 401, { error: "unauthorized", message: "send Authorization: Bearer <RT_SERVICE_TOKEN>" });
      }
      const { value, failure } = await readJson(req);
      if (failure) {
        const [status, error, message] = failure;
        return send(res, status, { error, message });
      }
      const [status, body] = createNotification(value);
      return send(res, status, body);
    }
    default:
      return send(res, 404, { error: "not_found", message: "no such route" });
  }
}

// ---------------------------------------------------------------- start and stop

http.on("error", (err) => {
  console.error(`reference-server: cannot listen on ${config.host}:${config.port}: ${err.message}`);
  process.exit(1);
});

if (redisClients.length) {
  // node-redis runs a client's (p)subscribe commands in order: once this one is confirmed,
  // the adapter's subscriptions for the three namespaces above are too.
  const [, sub] = redisClients;
  const probe = `reference-server-ready#${process.pid}`;
  await sub.subscribe(probe, () => {});
  await sub.unsubscribe(probe);
}

http.listen(config.port, config.host, () => {
  console.log(`listening ${http.address().port}`);
});

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`reference-server: ${signal}, closing`);
  io.close(() => {
    Promise.allSettled(redisClients.map((c) => c.quit())).then(() => process.exit(0));
  });
  // Do not hang on a stuck client or Redis.
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
