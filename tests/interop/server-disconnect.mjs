// `disconnect-me` → the server disconnects the socket: reason "io server disconnect".
import { check, connect, expectEqual, next, run, sleep } from "./lib.mjs";

run(async ({ url, transport }) => {
  const socket = await connect(url, transport, "/chat", { reconnection: true, reconnectionDelay: 100 });
  const disconnected = next(socket, "disconnect");
  socket.emit("disconnect-me");
  const [reason] = await disconnected;
  expectEqual(reason, "io server disconnect", "disconnect reason");
  // A server-side disconnect is final: the client must not reconnect on its own.
  await sleep(300);
  check(!socket.connected, "socket stays disconnected (no automatic reconnection)");
  return socket.io;
});
