// Issue 3, end to end: the real socket.io-client, authenticated the way a browser on the
// Next.js app is (the NextAuth v4 session COOKIE, minted by next-auth's own `encode`), opens
// a 1:1 room, sends, receives, pages history, gets notifications pushed by the HTTP API, and
// sees every documented error: bad input, foreign rooms, the rate limit, refused
// handshakes, API errors. Driven by tests/it/domain.rs against each storage backend.
//
// Usage: node chat-flow.mjs <server-url> <NEXTAUTH_SECRET> <RT_SERVICE_TOKEN> <websocket|polling>
//
// The server must run with `--rate-limit message:send=10/60`. User ids carry a per-run tag,
// so runs against one server (or one Redis) never share rooms, counts or rate budgets.
// Progress goes to stdout, one line per step; any mismatch exits 1 with the exact
// expectation on stderr; the whole run times out after 15 s (INTEROP_TIMEOUT_MS).

import { encode } from "next-auth/jwt";
import { readFileSync } from "node:fs";
import { check, expectEqual, log, manager, next, request, runScript, show } from "./lib.mjs";

const versions = ["socket.io-client", "next-auth"]
  .map((name) => {
    const manifest = new URL(`./node_modules/${name}/package.json`, import.meta.url);
    return `${name}@${JSON.parse(readFileSync(manifest, "utf8")).version}`;
  })
  .join(" ");

const USAGE =
  "usage: node chat-flow.mjs <server-url> <NEXTAUTH_SECRET> <RT_SERVICE_TOKEN> <websocket|polling>";
const [url, secret, serviceToken, transport] = process.argv.slice(2);
if (!url || !secret || !serviceToken || !["websocket", "polling"].includes(transport)) {
  console.error(`[chat-flow] bad arguments\n${USAGE}`);
  process.exit(2);
}

/** The server's `--rate-limit message:send=10/60`. */
const SEND_POINTS = 10;
/** chat::MAX_MESSAGE_CHARS and api::MAX_BODY_BYTES. */
const MAX_TEXT_CHARS = 4000;
const MAX_API_BODY = 64 * 1024;
/** A room id no test creates. */
const NO_SUCH_ROOM = 2_000_000_000;

const tag = `${transport}-${process.pid}-${Date.now().toString(36)}`;
const ALICE = `alice-${tag}`;
const BOB = `bob-${tag}`;
const CAROL = `carol-${tag}`;

/** A NextAuth v4 session token, exactly as the Next.js app's `jwt` strategy makes it. */
function sessionToken(userId, key = secret) {
  const name = userId.split("-")[0];
  return encode({
    token: { name, email: `${name}@example.com`, picture: null, sub: userId },
    secret: key,
    maxAge: 3600,
  });
}

const cookie = (token) => `next-auth.session-token=${token}`;
const managers = [];

/** A Manager whose handshake (polling GETs or the WebSocket upgrade) carries `cookieHeader`. */
function session(cookieHeader) {
  const extra = cookieHeader === undefined ? {} : { extraHeaders: { cookie: cookieHeader } };
  const m = manager(url, transport, extra);
  managers.push(m);
  return m;
}

/** Connects `socket`; a connect_error fails the run with its message and data. */
function connect(socket, who) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => {
      log(`connected ${who} ${socket.nsp} id=${socket.id} transport=${socket.io.engine.transport.name}`);
      resolve(socket);
    });
    socket.once("connect_error", (err) =>
      reject(new Error(`${who} ${socket.nsp}: connect_error ${show(err.message)} data=${show(err.data)}`)),
    );
    socket.connect();
  });
}

/** Connects `socket` expecting a refusal; resolves with the connect_error. */
function refused(socket, what) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => reject(new Error(`${what}: connected (id=${socket.id}), expected connect_error`)));
    socket.once("connect_error", resolve);
    socket.connect();
  });
}

/** Emits with an ack and returns the ack's single argument. */
async function call(socket, event, ...args) {
  const answer = await request(socket, event, ...args);
  if (answer.length !== 1) throw new Error(`"${event}" acked ${show(answer)}, expected one argument`);
  return answer[0];
}

/** Emits expecting `{error: code, message}` (and nothing else but `retryAfterMs`). */
async function expectFailure(socket, event, args, code, what) {
  const ack = await call(socket, event, ...args);
  const ok =
    ack !== null &&
    typeof ack === "object" &&
    ack.error === code &&
    typeof ack.message === "string" &&
    ack.message.length > 0 &&
    Object.keys(ack).every((k) => ["error", "message", "retryAfterMs"].includes(k));
  if (!ok) throw new Error(`${what}: expected {error: "${code}", message}, got ${show(ack)}`);
  log(`ok: ${what} -> ${code} (${ack.message})`);
  return ack;
}

const isId = (v) => Number.isSafeInteger(v) && v > 0;
const isTimestamp = (v) =>
  typeof v === "string" && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(v) && Math.abs(Date.parse(v) - Date.now()) < 60_000;

/** Exactly `{id, createdAt}` with a fresh id and an RFC 3339 UTC millisecond timestamp. */
function expectCreated(body, what) {
  const keys = Object.keys(body ?? {}).sort();
  if (!isId(body?.id) || !isTimestamp(body?.createdAt) || keys.join() !== "createdAt,id") {
    throw new Error(`${what}: expected {id, createdAt} (createdAt like 2025-01-01T00:00:00.000Z, now), got ${show(body)}`);
  }
  log(`ok: ${what} -> id=${body.id} createdAt=${body.createdAt}`);
  return body;
}

/** `POST path` to the HTTP API; returns `{status, type, body}` with `body` parsed as JSON. */
async function api(path, { body, bearer = serviceToken, raw } = {}) {
  const headers = { "content-type": "application/json" };
  if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
  const res = await fetch(new URL(path, url), {
    method: "POST",
    headers,
    body: raw ?? JSON.stringify(body),
    signal: AbortSignal.timeout(3000),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`POST ${path}: ${res.status} with a body that is not JSON: ${show(text.slice(0, 200))}`);
  }
  return { status: res.status, type: res.headers.get("content-type"), body: parsed };
}

async function expectApiError(path, options, status, code, what) {
  const res = await api(path, options);
  if (res.status !== status || res.type !== "application/json" || res.body?.error !== code || typeof res.body?.message !== "string") {
    throw new Error(
      `${what}: expected ${status} application/json {error: "${code}", message}, got ${res.status} ${res.type} ${show(res.body)}`,
    );
  }
  log(`ok: ${what} -> ${status} ${code}`);
}

async function main() {
  log(`start url=${url} transport=${transport} ${versions} users=${ALICE},${BOB},${CAROL}`);
  const [aliceToken, bobToken, carolToken, forgedToken] = await Promise.all([
    sessionToken(ALICE),
    sessionToken(BOB),
    sessionToken(CAROL),
    sessionToken(ALICE, `${secret}-but-not-the-server's`),
  ]);
  check(aliceToken.split(".").length === 5, "next-auth minted a JWE session token (5 segments)");

  // ---- connect: alice on /chat; bob on /chat and /notifications (one engine connection)
  const alice = await connect(session(cookie(aliceToken)).socket("/chat"), "alice");
  const bobManager = session(cookie(bobToken));
  const bob = await connect(bobManager.socket("/chat"), "bob");
  const bobNotes = await connect(bobManager.socket("/notifications"), "bob");

  const aliceInbox = [];
  alice.on("message:new", (m) => aliceInbox.push(m));
  /** Ids alice sent from her socket: she must never get message:new for them. */
  const aliceSocketSends = new Set();
  /** message:send points alice has used: every send that passed input validation
   * (stored, or refused for the room: not_found/forbidden) and every /api/chat/send with
   * senderId alice. Refusals for the input itself (invalid_input, payload_too_large) and
   * rate_limited answers cost nothing. */
  let aliceSends = 0;

  // ---- room:open from both sides: the same room
  const opened = await call(alice, "room:open", { peerId: BOB });
  check(isId(opened?.roomId) && Object.keys(opened).length === 1, `alice room:open -> {roomId} (${show(opened)})`);
  const roomId = opened.roomId;
  expectEqual(await call(bob, "room:open", { peerId: ALICE }), { roomId }, "bob room:open -> the same roomId");

  /** Every stored message, oldest first, as message:new and history show it. */
  const sent = [];

  /** `from` sends `text`; `to` must receive it as message:new; `from` must not. */
  async function send(from, fromId, to, text) {
    const received = next(to, "message:new");
    const ack = expectCreated(await call(from, "message:send", { roomId, text }), `${fromId} message:send ack`);
    const message = { id: ack.id, roomId, senderId: fromId, text, createdAt: ack.createdAt };
    const [got] = await received;
    expectEqual(got, message, `the peer receives ${fromId}'s message:new`);
    sent.push(message);
    if (from === alice) {
      aliceSends += 1;
      aliceSocketSends.add(ack.id);
      // The server emits to the room before it acks: an echo would already be here.
      check(!aliceInbox.some((m) => m.id === ack.id), `alice's socket does not get her own message:new ${ack.id}`);
    }
    return message;
  }

  // ---- send and receive, both ways (both sockets are in the room)
  await send(alice, ALICE, bob, "hello bob");
  for (const text of ["hi alice", "how are you?", "🦀 unicode ✓"]) await send(bob, BOB, alice, text);
  for (const text of ["fine", "thanks"]) await send(alice, ALICE, bob, text);

  // ---- history: newest first, pages of 3 that neither overlap nor skip
  const newestFirst = [...sent].reverse();
  const page1 = await call(alice, "message:history", { roomId, limit: 3 });
  expectEqual(page1, { messages: newestFirst.slice(0, 3), nextBefore: newestFirst[2].id }, "history page 1 (limit 3)");
  const page2 = await call(alice, "message:history", { roomId, before: page1.nextBefore, limit: 3 });
  expectEqual(page2, { messages: newestFirst.slice(3, 6), nextBefore: newestFirst[5].id }, "history page 2 (before page 1's nextBefore)");
  const page3 = await call(alice, "message:history", { roomId, before: page2.nextBefore, limit: 3 });
  expectEqual(page3, { messages: [], nextBefore: null }, "history page 3 is empty, no cursor");
  expectEqual(await call(bob, "message:history", { roomId, limit: 3 }), page1, "bob sees the same history");

  // ---- notifications pushed by the HTTP API
  const note = { type: "chat_mention", title: "alice mentioned you", body: "in your room", data: { roomId, from: ALICE } };
  const pushed = next(bobNotes, "notification:new");
  const created = await api("/api/notifications", { body: { userId: BOB, ...note } });
  if (created.status !== 201 || created.type !== "application/json") {
    throw new Error(`POST /api/notifications: expected 201 application/json, got ${created.status} ${created.type} ${show(created.body)}`);
  }
  const { id: noteId, createdAt: noteAt } = created.body;
  check(isId(noteId) && isTimestamp(noteAt), `POST /api/notifications -> 201 id=${noteId} createdAt=${noteAt}`);
  expectEqual(created.body, { id: noteId, createdAt: noteAt, unreadCount: 1, delivered: 1 }, "POST /api/notifications body");
  const stored = { id: noteId, userId: BOB, ...note, status: "unread", createdAt: noteAt, readAt: null };
  const [pushedNote] = await pushed;
  expectEqual(pushedNote, { ...stored, unreadCount: 1 }, "bob receives notification:new with unreadCount 1");
  expectEqual(await call(bobNotes, "notifications:unread_count"), { count: 1 }, "notifications:unread_count");
  expectEqual(await call(bobNotes, "notifications:list", {}), { notifications: [stored], nextCursor: null }, "notifications:list {}");
  const badge = next(bobNotes, "notifications:unread_count");
  expectEqual(await call(bobNotes, "notifications:mark_read", { all: true }), { updated: 1, unreadCount: 0 }, "notifications:mark_read {all: true}");
  expectEqual((await badge)[0], { count: 0 }, "bob's sockets get notifications:unread_count {count: 0}");
  expectEqual(await call(bobNotes, "notifications:unread_count"), { count: 0 }, "unread count after mark_read");

  // ---- a message sent by the app through the HTTP API reaches the room
  {
    const text = "sent by the Next.js app";
    const bobGets = next(bob, "message:new");
    const aliceGets = next(alice, "message:new");
    const res = await api("/api/chat/send", { body: { roomId, message: text, senderId: ALICE } });
    if (res.status !== 201) throw new Error(`POST /api/chat/send: expected 201, got ${res.status} ${show(res.body)}`);
    const ack = expectCreated(res.body, "POST /api/chat/send -> 201");
    aliceSends += 1;
    const message = { id: ack.id, roomId, senderId: ALICE, text, createdAt: ack.createdAt };
    expectEqual((await bobGets)[0], message, "bob receives the API message as message:new");
    expectEqual((await aliceGets)[0], message, "alice's socket receives it too (it was not sent from a socket)");
    sent.push(message);
  }

  // ---- bad input: an error ack, and the connection stays usable
  const aliceStillUp = async (after) => {
    expectEqual(await call(alice, "room:join", { roomId }), { ok: true, roomId }, `alice room:join still works after ${after}`);
  };
  const badSends = [
    [[{ text: "no room" }], "invalid_input", "message:send without roomId"],
    [[{ roomId: "not-a-number", text: "x" }], "invalid_input", "message:send with roomId 'not-a-number'"],
    [[{ roomId: -3, text: "x" }], "invalid_input", "message:send with roomId -3"],
    [[{ roomId: 1.5, text: "x" }], "invalid_input", "message:send with roomId 1.5"],
    [[{ roomId }], "invalid_input", "message:send without text"],
    [[{ roomId, text: "" }], "invalid_input", "message:send with empty text"],
    [[{ roomId, text: " \n\t " }], "invalid_input", "message:send with blank text"],
    [[{ roomId, text: 42 }], "invalid_input", "message:send with numeric text"],
    [[{ roomId, text: "x".repeat(MAX_TEXT_CHARS + 1) }], "payload_too_large", `message:send with ${MAX_TEXT_CHARS + 1} chars`],
    [["just a string"], "invalid_input", "message:send with a string argument"],
    [[[roomId, "text"]], "invalid_input", "message:send with an array argument"],
    [[], "invalid_input", "message:send with no argument"],
  ];
  for (const [args, code, what] of badSends) {
    await expectFailure(alice, "message:send", args, code, what);
    await aliceStillUp(what);
  }
  await expectFailure(alice, "room:open", ["bob"], "invalid_input", "room:open with a string argument");
  await expectFailure(alice, "room:open", [{ peerId: ALICE }], "invalid_input", "room:open with yourself");
  await expectFailure(alice, "message:history", [{ roomId, limit: 0 }], "invalid_input", "message:history with limit 0");
  await expectFailure(alice, "room:join", [{ roomId: NO_SUCH_ROOM }], "not_found", "room:join of an unknown room");
  await expectFailure(alice, "message:send", [{ roomId: NO_SUCH_ROOM, text: "anyone?" }], "not_found", "message:send to an unknown room");
  aliceSends += 1;
  await aliceStillUp("not_found");

  // ---- a room alice is not in: bob and carol's
  const carol = await connect(session(cookie(carolToken)).socket("/chat"), "carol");
  const theirs = await call(carol, "room:open", { peerId: BOB });
  check(isId(theirs?.roomId) && theirs.roomId !== roomId, `carol room:open with bob -> another room ${show(theirs)}`);
  await expectFailure(alice, "room:join", [{ roomId: theirs.roomId }], "forbidden", "alice room:join of bob and carol's room");
  await expectFailure(alice, "message:send", [{ roomId: theirs.roomId, text: "let me in" }], "forbidden", "alice message:send to bob and carol's room");
  aliceSends += 1;
  await expectFailure(alice, "message:history", [{ roomId: theirs.roomId }], "forbidden", "alice message:history of bob and carol's room");
  expectEqual(
    await call(carol, "message:history", { roomId: theirs.roomId }),
    { messages: [], nextBefore: null },
    "nothing reached bob and carol's room",
  );
  await aliceStillUp("forbidden");

  await expectFailure(bobNotes, "notifications:mark_read", [{}], "invalid_input", "notifications:mark_read {}");
  await expectFailure(bobNotes, "notifications:mark_read", [[1, 2]], "invalid_input", "notifications:mark_read with an array");
  expectEqual(await call(bobNotes, "notifications:unread_count"), { count: 0 }, "bob's /notifications still answers");

  // ---- the rate limit: the 11th send in the window is refused, the socket stays
  log(`alice has used ${aliceSends} of ${SEND_POINTS} message:send points`);
  if (aliceSends > SEND_POINTS) throw new Error(`the script used ${aliceSends} points before the rate-limit step`);
  while (aliceSends < SEND_POINTS) {
    await send(alice, ALICE, bob, `message ${aliceSends + 1} of ${SEND_POINTS}`);
  }
  const limited = await expectFailure(alice, "message:send", [{ roomId, text: "one too many" }], "rate_limited", `message:send #${SEND_POINTS + 1} in the window`);
  check(
    Number.isSafeInteger(limited.retryAfterMs) && limited.retryAfterMs > 0 && limited.retryAfterMs <= 60_000,
    `rate_limited carries retryAfterMs in (0, 60000] (${limited.retryAfterMs})`,
  );
  check(alice.connected, "alice is still connected after rate_limited");
  await aliceStillUp("rate_limited");
  const newest = await call(alice, "message:history", { roomId, limit: 1 });
  expectEqual(newest.messages, [sent.at(-1)], "the refused message was not stored");

  // alice never got message:new for what her own socket sent
  const echoes = aliceInbox.filter((m) => aliceSocketSends.has(m.id));
  if (echoes.length > 0) throw new Error(`alice's socket received its own messages: ${show(echoes)}`);
  log(`ok: alice's socket got ${aliceInbox.length} message:new, none of her ${aliceSocketSends.size} own`);

  // ---- refused handshakes: connect_error {message: "unauthorized", data: {reason}}, no socket
  for (const nsp of ["/chat", "/notifications"]) {
    const anonymous = session(undefined).socket(nsp);
    const err = await refused(anonymous, `no cookie on ${nsp}`);
    expectEqual({ message: err.message, data: err.data }, { message: "unauthorized", data: { reason: "missing_token" } }, `no cookie on ${nsp} -> connect_error`);
    check(!anonymous.connected && anonymous.id === undefined, `no socket on ${nsp} without a token`);
  }
  {
    const forged = session(cookie(forgedToken)).socket("/chat");
    const err = await refused(forged, "a cookie minted with another secret");
    const reason = err.data?.reason;
    if (err.message !== "unauthorized" || typeof reason !== "string" || reason === "missing_token") {
      throw new Error(`wrong secret: expected connect_error "unauthorized" with a reason other than missing_token, got ${show(err.message)} data=${show(err.data)}`);
    }
    log(`ok: a cookie minted with another secret -> connect_error unauthorized, reason ${reason}`);
    check(!forged.connected && forged.id === undefined, "no socket with a token of another secret");
  }

  // ---- HTTP API errors, each a JSON {error}
  await expectApiError("/api/notifications", { body: { userId: BOB, type: "t", title: "t" }, bearer: null }, 401, "unauthorized", "POST /api/notifications without a bearer");
  await expectApiError("/api/notifications", { body: { userId: BOB, type: "t", title: "t" }, bearer: `${serviceToken}x` }, 401, "unauthorized", "POST /api/notifications with a wrong bearer");
  await expectApiError("/api/notifications", { raw: '{"userId": "bob", ' }, 400, "invalid_input", "POST /api/notifications with bad JSON");
  await expectApiError("/api/notifications", { body: { type: "t", title: "t" } }, 400, "invalid_input", "POST /api/notifications without userId");
  {
    const raw = JSON.stringify({ userId: BOB, type: "t", title: "t", body: "x".repeat(MAX_API_BODY) });
    await expectApiError("/api/notifications", { raw }, 413, "payload_too_large", `POST /api/notifications with a ${raw.length}-byte body (limit ${MAX_API_BODY})`);
  }
  // carol, not alice: alice's budget is spent, and a send is charged before the room check.
  await expectApiError("/api/chat/send", { body: { roomId: NO_SUCH_ROOM, message: "hi", senderId: CAROL } }, 404, "not_found", "POST /api/chat/send to an unknown room");
  await expectApiError("/api/chat/send", { body: { roomId, message: "hi", senderId: CAROL } }, 403, "forbidden", "POST /api/chat/send by a non-member");
  expectEqual(await call(bobNotes, "notifications:unread_count"), { count: 0 }, "no notification was stored by the refused requests");

  for (const socket of [alice, bob, bobNotes, carol]) socket.disconnect();
  for (const m of managers) m.disconnect();
}

runScript(main);
