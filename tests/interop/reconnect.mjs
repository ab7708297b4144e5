// Server restart → reconnection. Protocol with tests/it/interop.rs over stdout:
//   we print `READY <id>` once connected and idle; the test stops the server (graceful
//   shutdown) and starts a new one on the same address; we see `disconnect` ("transport
//   close"), reconnect, check an echo round trip and print `RECONNECTED <new id>`.
import { check, connect, expectEqual, log, next, request, run, sleep } from "./lib.mjs";

run(async ({ url, transport }) => {
  const socket = await connect(url, transport, "/chat", {
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    randomizationFactor: 0,
  });
  const engine = socket.io.engine;
  if (transport === "default" && engine.transport.name !== "websocket") {
    await next(engine, "upgrade", 5000);
    log("upgraded to websocket");
  }
  // Let the transport go idle, so that a polling client's next GET is parked at the server
  // when the shutdown comes (the server answers it with a `close` packet). A GET still on
  // its way would find the listener or the session gone: "transport error" instead.
  await sleep(150);

  const firstId = socket.id;
  const disconnected = next(socket, "disconnect", 10000);
  socket.io.on("reconnect_attempt", (n) => log(`reconnect attempt ${n}`));
  console.log(`READY ${firstId}`);

  const [reason] = await disconnected;
  expectEqual(reason, "transport close", "disconnect reason on server shutdown");
  await next(socket, "connect", 10000);
  log(`reconnected transport=${socket.io.engine.transport.name}`);
  check(socket.id && socket.id !== firstId, `new socket id ${socket.id} differs from ${firstId}`);
  expectEqual(await request(socket, "echo", "again"), ["again"], "echo on the new server");
  console.log(`RECONNECTED ${socket.id}`);
  return socket.io;
}, { timeoutMs: 20000 });
