// Client → server emit with ack, with nested JSON in several arguments.
import { connect, expectEqual, request, run } from "./lib.mjs";

const nested = {
  name: "ünïcødé ✓ \"quoted\" \\ back\nslash",
  numbers: [0, -1, 1.5, 1e21, Number.MAX_SAFE_INTEGER],
  flags: { yes: true, no: false, nothing: null },
  deep: { a: { b: { c: { d: [[], {}, [{ e: "f" }]] } } } },
  empty: "",
};

run(async ({ url, transport }) => {
  const socket = await connect(url, transport, "/chat");
  expectEqual(await request(socket, "echo"), [], "ack with no arguments");
  expectEqual(await request(socket, "echo", nested), [nested], "ack with one nested object");
  expectEqual(await request(socket, "echo", 1, "two", [3], nested, null), [1, "two", [3], nested, null], "ack with mixed arguments");

  // Several acks in flight at once are matched by id.
  const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => request(socket, "echo", { i })));
  expectEqual(answers, [1, 2, 3, 4, 5].map((i) => [{ i }]), "five concurrent acks matched by id");
  return socket.io;
});
