// A real Node socket.io 4.8 server with @socket.io/redis-adapter 8.x, as one node of a
// mixed cluster with realtime-server nodes (driven by tests/it/cluster.rs).
//
//   node cluster-node.mjs <port> <redis-url>
//
// Prints `listening <port>` once subscribed. Clients drive it with events:
// - `join` (room) → acks true;  `to-room` (room, event, ...args) → socket.to(room).emit;
// - `admin` (command, ...args) → runs a server-side API call and acks its result:
//   socketsJoin(room, target?), disconnectSockets(room), serverSideEmit(event, ...args)
//   (with ack), fetchSockets(nsp = "/"), emitToRoom(room, event, ...args), rooms(sid),
//   emitWithAck(nsp, room, event, ...args) (every client's answer, 3 s timeout).
// Server-side event `ping` answers {from: "node", args}.

import { redisAdapterServer } from "./redis-peer.mjs";

const [port, redisUrl] = process.argv.slice(2);
const { http, io } = await redisAdapterServer(redisUrl, { requestsTimeout: 3000 });

// `/bench` exists from the start, so this node subscribes to its channels before any
// request: the adapter counts the answers it waits for with PUBSUB NUMSUB.
io.of("/bench");

io.on("ping", (...args) => {
  const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
  if (ack) ack({ from: "node", args });
});

io.on("connection", (socket) => {
  socket.data = { runtime: "node" };
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack?.(true);
  });
  socket.on("to-room", (room, event, ...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    socket.to(room).emit(event, ...args);
    ack?.(true);
  });
  socket.on("admin", async (cmd, ...args) => {
    const ack = args.pop();
    try {
      switch (cmd) {
        case "socketsJoin": {
          const [room, target] = args;
          (target ? io.in(target) : io).socketsJoin(room);
          return ack({ ok: true });
        }
        case "disconnectSockets":
          io.in(args[0]).disconnectSockets(false);
          return ack({ ok: true });
        case "serverSideEmit": {
          const responses = await io.serverSideEmitWithAck(...args);
          return ack({ ok: true, responses });
        }
        case "fetchSockets": {
          const sockets = await io.of(args[0] ?? "/").fetchSockets();
          return ack({ ok: true, sockets: sockets.map((s) => ({ id: s.id, data: s.data })) });
        }
        case "emitToRoom": {
          const [room, event, ...rest] = args;
          io.to(room).emit(event, ...rest);
          return ack({ ok: true });
        }
        case "emitWithAck": {
          const [nsp, room, event, ...rest] = args;
          const responses = await io.of(nsp).to(room).timeout(3000).emitWithAck(event, ...rest);
          return ack({ ok: true, responses });
        }
        case "rooms":
          return ack({ ok: true, rooms: [...(io.sockets.sockets.get(args[0])?.rooms ?? [])] });
        default:
          return ack({ ok: false, error: `unknown command ${cmd}` });
      }
    } catch (e) {
      ack({ ok: false, error: e.message });
    }
  });
});

http.listen(Number(port), "127.0.0.1", () => console.log(`listening ${port}`));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
