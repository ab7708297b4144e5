// The receiving side of an emitter test (driven by tests/it/emitter.rs): a real Node
// socket.io 4.8 server on @socket.io/redis-adapter 8.x, with real socket.io-clients
// connected to it over WebSocket.
//
//   node emitter-peer.mjs <redis-url> <nsp>
//
// Clients `a`, `b`, `c` connect to <nsp>; the server puts each in room `user:<name>`, and
// `a` in `room:1`, `b` in `room:1` and `muted`. Prints one JSON line per observation:
//   {"ready": <port>}                            every client is connected;
//   {"client": "a", "event": "e", "args": [..]}  an event a client received (a Buffer
//                                                argument as {"$binary": [bytes]});
//   {"client": "c", "disconnect": "<reason>"}    a client was disconnected;
//   {"server": "<event>", "args": [..]}          a server-side event reached <nsp>.
// Commands, one JSON object per stdin line:
//   {"cmd": "rooms"} → {"rooms": {"a": [..], ...}}  each connected socket's rooms (sorted,
//                                                    its own id left out).
// Exits when stdin closes.

import { createInterface } from "node:readline";
import { io as connect } from "socket.io-client";
import { redisAdapterServer } from "./redis-peer.mjs";

const [redisUrl, nsp] = process.argv.slice(2);
const ROOMS = { a: ["room:1"], b: ["room:1", "muted"], c: [] };
const out = (obj) => console.log(JSON.stringify(obj));
const plain = (arg) => (Buffer.isBuffer(arg) ? { $binary: [...arg] } : arg);

const { http, io } = await redisAdapterServer(redisUrl);
const namespace = io.of(nsp);
const byName = new Map();
namespace.on("connection", (socket) => {
  const name = socket.handshake.auth.name;
  byName.set(name, socket);
  socket.join([`user:${name}`, ...ROOMS[name]]);
  socket.on("disconnect", () => byName.delete(name));
});
// A server-side event (serverSideEmit) is emitted on the namespace itself.
for (const event of ["ping"]) {
  namespace.on(event, (...args) => out({ server: event, args: args.map(plain) }));
}

await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
const port = http.address().port;

async function client(name) {
  const socket = connect(`http://127.0.0.1:${port}${nsp}`, {
    auth: { name },
    transports: ["websocket"],
    reconnection: false,
  });
  socket.onAny((event, ...args) => out({ client: name, event, args: args.map(plain) }));
  socket.on("disconnect", (reason) => out({ client: name, disconnect: reason }));
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  return socket;
}

const clients = await Promise.all(["a", "b", "c"].map(client));
out({ ready: port });

createInterface({ input: process.stdin }).on("line", (line) => {
  const { cmd } = JSON.parse(line);
  if (cmd === "rooms") {
    const rooms = {};
    for (const [name, socket] of byName) {
      rooms[name] = [...socket.rooms].filter((r) => r !== socket.id).sort();
    }
    out({ rooms });
  } else {
    console.error(`unknown command ${cmd}`);
  }
});
process.stdin.on("end", () => {
  clients.forEach((c) => c.close());
  process.exit(0);
});
