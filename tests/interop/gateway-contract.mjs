// The gateway contract of the requirements, end to end: this script plays the Next.js API
// gateway (its ChatService / NotificationService classes, configured by CHAT_SERVICE_URL
// and NOTIFICATION_SERVICE_URL) and two browsers (the real socket.io-client) in front of
// a chat node and a notification node that share Redis and the database, with the
// browsers connecting through the nginx config `rtctl gen nginx --chat-upstream …
// --notifications-upstream …` wrote (one host, one Engine.IO path per service, two
// managers per browser).
//
// - ChatService.sendMessage(roomId, message, senderId) → 201 {id, createdAt}, and the
//   room's members receive `message:new` with that id;
// - NotificationService.create(userId, …) → 201 {id, createdAt, unreadCount, delivered},
//   and the user's socket receives `notification:new` with that id;
// - the errors a gateway must handle: each call at the wrong service (404 wrong_service,
//   naming the right one), no token (401), a sender outside the room (403), an unknown
//   room (404 not_found), a bad room id (400), an oversized body (413);
// - the same two routes through nginx reach the right service.
//
// Usage: NEXTAUTH_SECRET=… RT_SERVICE_TOKEN=… CHAT_SERVICE_URL=… NOTIFICATION_SERVICE_URL=…
//        node gateway-contract.mjs <nginx-url> [transport]
// Prints `contract {json}` with what each call returned.

import { encode } from "next-auth/jwt";
import { check, connected, expectEqual, log, manager, next, request, run, show } from "./lib.mjs";

const secret = process.env.NEXTAUTH_SECRET;
const serviceToken = process.env.RT_SERVICE_TOKEN;

/** The gateway's client of one service, as src/lib/services/chatService.ts in the app. */
class ServiceClient {
  constructor(baseUrl, token = serviceToken) {
    this.baseUrl = baseUrl;
    this.token = token;
  }

  /** POSTs JSON; resolves with {status, body} whatever the status (the gateway decides). */
  async post(route, payload) {
    const headers = { "Content-Type": "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const res = await fetch(`${this.baseUrl}${route}`, {
      method: "POST",
      headers,
      body: typeof payload === "string" ? payload : JSON.stringify(payload),
    });
    const text = await res.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`POST ${this.baseUrl}${route}: ${res.status} with a body that is not JSON: ${show(text)}`);
    }
    return { status: res.status, body };
  }

  sendMessage(roomId, message, senderId) {
    return this.post("/api/chat/send", { roomId, message, senderId });
  }

  createNotification(userId, type, title, body, data) {
    return this.post("/api/notifications", { userId, type, title, body, data });
  }
}

const tokenFor = (user) => encode({ token: { name: user, sub: user }, secret, maxAge: 3600 });

/** One browser: a manager per service, as the docs tell the app to connect. */
async function browser(url, transport, user) {
  const auth = { token: await tokenFor(user) };
  const chatManager = manager(url, transport, { path: "/chat-io/" });
  const notifyManager = manager(url, transport, { path: "/notifications-io/" });
  const chat = await connected(chatManager.socket("/chat", { auth }), `${user} /chat`);
  const notifications = await connected(notifyManager.socket("/notifications", { auth }), `${user} /notifications`);
  return { user, chat, notifications };
}

function expectError(result, status, code, what) {
  expectEqual(result.status, status, `${what}: status`);
  expectEqual(result.body.error, code, `${what}: error code`);
  check(typeof result.body.message === "string" && result.body.message.length > 0, `${what}: a message`);
}

async function main({ url, transport }) {
  for (const [name, value] of Object.entries({ NEXTAUTH_SECRET: secret, RT_SERVICE_TOKEN: serviceToken })) {
    if (!value) throw new Error(`${name} must be set (the nodes' ${name})`);
  }
  const chatService = new ServiceClient(process.env.CHAT_SERVICE_URL);
  const notificationService = new ServiceClient(process.env.NOTIFICATION_SERVICE_URL);
  check(chatService.baseUrl && notificationService.baseUrl, "CHAT_SERVICE_URL and NOTIFICATION_SERVICE_URL set");
  const tag = process.pid;
  const alice = await browser(url, transport, `alice-${tag}`);
  const bob = await browser(url, transport, `bob-${tag}`);
  const contract = {};

  const [opened] = await request(alice.chat, "room:open", { peerId: bob.user });
  const roomId = opened?.roomId;
  check(Number.isInteger(roomId), `room:open answered a room id: ${show(opened)}`);
  await request(bob.chat, "room:join", { roomId });

  // The happy paths, and what the browsers see.
  const delivered = next(bob.chat, "message:new");
  const sent = await chatService.sendMessage(roomId, "hello from the gateway", alice.user);
  expectEqual(sent.status, 201, `sendMessage: ${show(sent.body)}`);
  check(Number.isInteger(sent.body.id) && typeof sent.body.createdAt === "string", `sendMessage body: ${show(sent.body)}`);
  const [message] = await delivered;
  expectEqual(message.id, sent.body.id, "message:new id");
  expectEqual(message.text, "hello from the gateway", "message:new text");
  contract.sendMessage = sent;

  const pushed = next(bob.notifications, "notification:new");
  const created = await notificationService.createNotification(bob.user, "mention", "Hi", "from the gateway", { roomId });
  expectEqual(created.status, 201, `createNotification: ${show(created.body)}`);
  const [notification] = await pushed;
  expectEqual(notification.id, created.body.id, "notification:new id");
  check(created.body.unreadCount >= 1 && created.body.delivered >= 1, `createNotification body: ${show(created.body)}`);
  contract.createNotification = created;

  // The errors a gateway must handle.
  const wrongChat = await notificationService.sendMessage(roomId, "x", alice.user);
  expectError(wrongChat, 404, "wrong_service", "sendMessage at the notification service");
  expectEqual(wrongChat.body.servedBy, "chat", "wrong service names the chat service");
  const wrongNotify = await chatService.createNotification(bob.user, "t", "x");
  expectError(wrongNotify, 404, "wrong_service", "createNotification at the chat service");
  expectEqual(wrongNotify.body.servedBy, "notifications", "wrong service names the notification service");
  contract.wrongService = wrongChat.body;
  contract.noToken = await new ServiceClient(chatService.baseUrl, null).sendMessage(roomId, "x", alice.user);
  expectError(contract.noToken, 401, "unauthorized", "no token");
  contract.notMember = await chatService.sendMessage(roomId, "x", `carol-${tag}`);
  expectError(contract.notMember, 403, "forbidden", "sender outside the room");
  contract.unknownRoom = await chatService.sendMessage(2 ** 40, "x", alice.user);
  expectError(contract.unknownRoom, 404, "not_found", "unknown room");
  contract.badRoomId = await chatService.sendMessage("general", "x", alice.user);
  expectError(contract.badRoomId, 400, "invalid_input", "bad room id");
  contract.tooLarge = await chatService.post("/api/chat/send", JSON.stringify({ roomId, message: "x".repeat(70 * 1024), senderId: alice.user }));
  expectError(contract.tooLarge, 413, "payload_too_large", "oversized body");

  // Through nginx: each API route reaches its own service.
  const viaProxy = new ServiceClient(url);
  const proxied = next(bob.chat, "message:new");
  const proxiedSend = await viaProxy.sendMessage(roomId, "through nginx", alice.user);
  expectEqual(proxiedSend.status, 201, `sendMessage through nginx: ${show(proxiedSend.body)}`);
  expectEqual((await proxied)[0].text, "through nginx", "message:new through nginx");
  const proxiedNotify = await viaProxy.createNotification(bob.user, "mention", "via nginx");
  expectEqual(proxiedNotify.status, 201, `createNotification through nginx: ${show(proxiedNotify.body)}`);

  log(`contract ${JSON.stringify(contract)}`);
  for (const b of [alice, bob]) {
    b.chat.disconnect();
    b.notifications.disconnect();
  }
}

run(main, { timeoutMs: 30000 });
