// Binary round trip: `echo` with Buffers (top level and nested) comes back as identical Buffers.
import { connect, expectEqual, request, run } from "./lib.mjs";

const bytes = (n, seed) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 256));

run(async ({ url, transport }) => {
  const socket = await connect(url, transport, "/chat");
  const small = Buffer.from([0, 1, 2, 253, 254, 255]);
  expectEqual(await request(socket, "echo", small), [small], "top-level Buffer");

  const payload = { label: "files", files: [{ name: "a.bin", data: bytes(1024, 7) }, { name: "empty", data: Buffer.alloc(0) }], meta: { raw: small } };
  expectEqual(await request(socket, "echo", "before", payload, bytes(64 * 1024, 3)), ["before", payload, bytes(64 * 1024, 3)], "Buffers nested in objects and arrays, plus a 64 KiB Buffer");
  return socket.io;
});
