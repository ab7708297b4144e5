// `message` → the server emits `message-back` with the same arguments (no ack involved).
import { connect, expectEqual, next, run } from "./lib.mjs";

run(async ({ url, transport }) => {
  const socket = await connect(url, transport, "/chat");
  const args = ["hello", 42, { nested: { list: [1, "two", null] } }, Buffer.from("bytes")];
  const back = next(socket, "message-back");
  socket.emit("message", ...args);
  expectEqual(await back, args, "message-back carries the same arguments");
  return socket.io;
});
