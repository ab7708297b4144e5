// A Node socket.io 4.8 server running the real `instrument()` of @socket.io/admin-ui
// 0.5.1, on @socket.io/redis-adapter: the Node member of a mixed Admin UI cluster
// (tests/it/admin_ui.rs). Its `/chat` namespace lets anyone in (the Rust nodes' /chat
// checks tokens; this one only has to hold sockets the UI can act on). Login sessions are
// in Redis through the package's own RedisStore.
//
//   node admin-ui-node-peer.mjs <port> <redis-url> <bcrypt-hash> <mode>
//
// Prints `listening <port>` once subscribed.

import { instrument, RedisStore } from "@socket.io/admin-ui";
import { createClient } from "redis";
import { redisAdapterServer } from "./redis-peer.mjs";

const [port, redisUrl, hash, mode = "production"] = process.argv.slice(2);
const { http, io } = await redisAdapterServer(redisUrl, { requestsTimeout: 3000 });
io.of("/chat").on("connection", (socket) => {
  socket.data.runtime = "node"; // keep what instrument() put there (data._admin)
});
// The package's RedisStore (written for node-redis v3's callbacks: legacy mode), so a
// session made on a Rust node is good here and the other way round.
const sessions = createClient({ url: redisUrl, legacyMode: true });
await sessions.connect();
instrument(io, {
  auth: { type: "basic", username: "admin", password: hash },
  serverId: "node-peer",
  store: new RedisStore(sessions),
  mode,
});
http.listen(Number(port), "127.0.0.1", () => console.log(`listening ${port}`));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
