// Server → client emit with ack: the server emits `q` 41 to us (via `ask`), we ack 42.
import { connect, expectEqual, request, run } from "./lib.mjs";

run(async ({ url, transport }) => {
  const socket = await connect(url, transport, "/chat");
  socket.on("q", (x, ack) => ack(x + 1));
  expectEqual(await request(socket, "ask", "q", 41), [{ answer: [42] }], "server got our ack for q(41)");
  expectEqual(await request(socket, "ask", "q", -1), [{ answer: [0] }], "a second server ack round trip");
  return socket.io;
});
