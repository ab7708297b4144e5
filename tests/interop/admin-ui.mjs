// The Socket.IO Admin UI's protocol (`@socket.io/admin-ui` 0.5.1), spoken by the real
// socket.io-client as the UI page does, against a cluster: the first URL is the node the
// "UI" logs in to, the others are the rest of the cluster (one Redis).
//
// - a wrong password is refused with `invalid credentials` (the text the UI looks for);
// - the right one connects, gets `session` (16 hex digits) after CONNECT and `config`
//   with the features the mode gives (ADMIN_EXPECT_FEATURES, comma-separated);
// - the session id alone logs in on every other node (sessions are shared in Redis);
// - `server_stats` arrive from every node, with the package's fields;
// - the commands act across the cluster on app sockets (`/chat`, one per node): `join`
//   then `emit` to the room reaches a socket on another node, `leave` stops it,
//   `_disconnect` ends one socket — or, with ADMIN_READONLY=1, nothing happens.
//
// Usage: NEXTAUTH_SECRET=… ADMIN_USER=… ADMIN_PASSWORD=… ADMIN_EXPECT_FEATURES=…
//        [ADMIN_READONLY=1] node admin-ui.mjs <node-url>[,<node-url>…]
// Prints `stats <json>` per server and `summary <json>` at the end.

import { encode } from "next-auth/jwt";
import { check, connected, expectEqual, log, manager, next, runScript, show, sleep } from "./lib.mjs";

const [urlList] = process.argv.slice(2);
const urls = (urlList ?? "").split(",").filter(Boolean);
const { NEXTAUTH_SECRET: secret, ADMIN_USER: user, ADMIN_PASSWORD: password } = process.env;
const expectFeatures = (process.env.ADMIN_EXPECT_FEATURES ?? "").split(",").filter(Boolean);
const readonly = process.env.ADMIN_READONLY === "1";
const development = process.env.ADMIN_DEV === "1";
const LIVE = ["all_sockets", "socket_connected", "socket_updated", "socket_disconnected", "room_joined", "room_left", "event_received", "event_sent"];

/** An admin socket on `url` with `auth`; resolves with it and what came first. */
function admin(url, auth) {
  const socket = manager(url, "default").socket("/admin", { auth });
  const seen = { session: null, config: null, stats: new Map(), live: [] };
  for (const event of LIVE) socket.on(event, (...args) => seen.live.push([event, ...args]));
  socket.on("session", (id) => (seen.session = id));
  socket.on("config", (c) => (seen.config = c));
  socket.on("server_stats", (s) => seen.stats.set(s.serverId, s));
  return { socket, seen };
}

function refused(url, auth) {
  return new Promise((resolve, reject) => {
    const socket = manager(url, "default").socket("/admin", { auth });
    socket.once("connect", () => reject(new Error(`${url}: connected with ${show(auth)}`)));
    socket.once("connect_error", (err) => {
      socket.close();
      resolve(err.message);
    });
    socket.connect();
  });
}

async function appSocket(url, name) {
  const token = await encode({ token: { name, sub: name }, secret, maxAge: 3600 });
  return connected(manager(url, "default").socket("/chat", { auth: { token } }), `${name} /chat`);
}

/** Resolves true if `event` arrives on `socket` within `ms`, false otherwise. */
async function arrives(socket, event, ms) {
  try {
    return await next(socket, event, ms);
  } catch {
    return false;
  }
}

/** Development mode: the live events of the run, and a fresh UI's list of every socket. */
async function checkLive(ui, alice, bob, room, far) {
  alice.emit("typing", { roomId: 1 });
  await sleep(800);
  const live = ui.seen.live;
  const find = (event, pred) => live.find(([e, ...a]) => e === event && pred(...a));
  const iso = (t) => typeof t === "string" && new Date(t).toISOString() === t;
  const all = find("all_sockets", () => true);
  check(all && all[1].some((s) => s.nsp === "/admin"), `all_sockets on login lists the UI's own socket: ${show(all)}`);
  const conn = find("socket_connected", (s) => s.id === alice.id);
  check(conn, "socket_connected for a socket on another node");
  const s = conn[1];
  expectEqual([s.nsp, s.clientId.length, "auth" in s.handshake, typeof s.handshake.headers], ["/chat", 12, false, "object"], "SerializedSocket");
  check(iso(conn[2]), `an ISO timestamp: ${conn[2]}`);
  check(find("socket_updated", (u) => u.id === alice.id && u.nsp === "/chat" && u.transport === "websocket"), "socket_updated when the transport upgraded");
  check(find("room_joined", (nsp, r, id, t) => nsp === "/chat" && r === room && id === alice.id && iso(t)), "room_joined by the join command");
  check(find("room_left", (nsp, r, id) => nsp === "/chat" && r === room && id === alice.id), "room_left by the leave command");
  check(find("event_sent", (nsp, id, args) => nsp === "/chat" && id === alice.id && args[0] === "from-admin"), "event_sent for the emit command");
  check(find("event_received", (nsp, id, args) => nsp === "/chat" && id === alice.id && args[0] === "typing"), "event_received from a client");
  check(find("socket_disconnected", (nsp, id, reason) => nsp === "/chat" && id === bob.idBeforeDisconnect && reason === "server namespace disconnect"), `socket_disconnected with its reason: ${show(live.filter(([e]) => e === "socket_disconnected"))}`);
  check(!live.some(([e, nsp]) => (e === "event_sent" || e === "event_received") && nsp === "/admin"), "no events of the UI's own namespace");
  // A UI logging in on the first node lists the socket on the last one (fetch_sockets).
  const fresh = admin(urls[0], { username: user, password });
  await connected(fresh.socket, "a second UI");
  const deadline = Date.now() + 3000;
  while (!find.call(null, "all_sockets", () => true) && Date.now() < deadline) await sleep(100);
  while (!fresh.seen.live.some(([e]) => e === "all_sockets") && Date.now() < deadline) await sleep(100);
  const list = fresh.seen.live.find(([e]) => e === "all_sockets")?.[1] ?? [];
  const remote = list.find((x) => x.id === alice.id);
  check(remote && remote.clientId?.length === 12 && remote.transport && remote.rooms.includes(alice.id), `all_sockets lists ${far}'s socket with its client id: ${show(remote)}`);
  log(`live ${live.length} events; all_sockets ${list.length} sockets`);
  fresh.socket.close();
}

async function main() {
  check(urls.length >= 1 && secret && user && password, "urls, NEXTAUTH_SECRET, ADMIN_USER, ADMIN_PASSWORD");
  const message = await refused(urls[0], { username: user, password: `${password}-wrong` });
  expectEqual(message, "invalid credentials", "a wrong password is refused");
  expectEqual(await refused(urls[0], { username: `${user}x`, password }), "invalid credentials", "a wrong user");
  expectEqual(await refused(urls[0], { sessionId: "0123456789abcdef" }), "invalid credentials", "an unknown session");

  const ui = admin(urls[0], { username: user, password });
  await connected(ui.socket, "admin");
  await sleep(300);
  check(/^[0-9a-f]{16}$/.test(ui.seen.session ?? ""), `a session id: ${show(ui.seen.session)}`);
  expectEqual(ui.seen.config, { supportedFeatures: expectFeatures }, "config");

  const others = [];
  for (const url of urls.slice(1)) {
    const other = admin(url, { sessionId: ui.seen.session });
    await connected(other.socket, `admin by session on ${url}`);
    others.push(other);
  }
  await sleep(300);
  for (const o of others) expectEqual(o.seen.session, null, "no new session for a session login");
  // Every UI, whichever node it is on, gets every node's stats.
  const waitAll = Date.now() + 6000;
  while (others.some((o) => o.seen.stats.size < urls.length) && Date.now() < waitAll) await sleep(200);
  for (const o of others) expectEqual(o.seen.stats.size, urls.length, `a UI on another node sees ${[...o.seen.stats.keys()]}`);

  // Stats from every node reach the UI on the first one.
  const deadline = Date.now() + 6000;
  while (ui.seen.stats.size < urls.length && Date.now() < deadline) await sleep(200);
  expectEqual(ui.seen.stats.size, urls.length, `server_stats from every node: ${[...ui.seen.stats.keys()]}`);
  for (const s of ui.seen.stats.values()) {
    log(`stats ${JSON.stringify(s)}`);
    for (const key of ["serverId", "hostname", "pid", "uptime", "clientsCount", "pollingClientsCount", "aggregatedEvents", "namespaces"]) {
      check(key in s, `server_stats of ${s.serverId} has ${key}`);
    }
    check(s.namespaces.some((n) => n.name === "/admin"), `${s.serverId} lists /admin`);
  }

  // Commands, across nodes: app sockets on the last node, the UI on the first.
  const far = urls[urls.length - 1];
  const alice = await appSocket(far, `alice-${process.pid}`);
  const bob = await appSocket(far, `bob-${process.pid}`);
  const room = `admin-room-${process.pid}`;
  ui.socket.emit("join", "/chat", room, alice.id);
  await sleep(500);
  ui.socket.emit("emit", "/chat", room, "from-admin", { n: 1 });
  const got = await arrives(alice, "from-admin", 1500);
  ui.socket.emit("leave", "/chat", room, alice.id);
  await sleep(500);
  ui.socket.emit("emit", "/chat", room, "from-admin", { n: 2 });
  const after = await arrives(alice, "from-admin", 800);
  const dropped = arrives(bob, "disconnect", 1500);
  bob.idBeforeDisconnect = bob.id; // socket.io-client forgets its id on disconnect
  ui.socket.emit("_disconnect", "/chat", false, bob.id);
  const reason = (await dropped) && (await dropped)[0];
  if (readonly) {
    expectEqual([got, after, reason], [false, false, false], "readonly: every command ignored");
  } else {
    expectEqual(got, [{ n: 1 }], "join + emit reached a socket on another node");
    expectEqual(after, false, "after leave, the room's emit does not reach it");
    expectEqual(reason, "io server disconnect", "_disconnect ended the socket");
  }
  if (development) await checkLive(ui, alice, bob, room, far);
  log(`summary ${JSON.stringify({ servers: [...ui.seen.stats.keys()], features: ui.seen.config.supportedFeatures })}`);
  for (const s of [ui.socket, ...others.map((o) => o.socket), alice, bob]) s.close();
}

runScript(main, 30000);
