// Room broadcast among three clients: A, B, C join room R; A's `to-room` reaches B and C
// (ack count 2) and not A.
import { connect, expectEqual, log, next, request, run, sleep } from "./lib.mjs";

run(async ({ url, transport }) => {
  const room = `room-${process.pid}`;
  const [a, b, c] = await Promise.all(["A", "B", "C"].map(() => connect(url, transport, "/chat")));
  for (const [name, socket] of [["A", a], ["B", b], ["C", c]]) {
    expectEqual(await request(socket, "join", room), [true], `${name} joined ${room}`);
  }

  const echoedToA = [];
  a.on("hello", (...args) => echoedToA.push(args));
  const atB = next(b, "hello");
  const atC = next(c, "hello");

  const payload = { from: "A", text: "hi room", list: [1, 2, 3] };
  expectEqual(await request(a, "to-room", room, "hello", payload, 7), [2], "to-room ack counts the 2 other members");
  expectEqual(await atB, [payload, 7], "B received the broadcast");
  expectEqual(await atC, [payload, 7], "C received the broadcast");

  await sleep(300);
  expectEqual(echoedToA, [], "A (the sender) received nothing after a 300 ms grace period");

  // After B leaves, only C is reached.
  expectEqual(await request(b, "leave", room), [true], "B left the room");
  const atC2 = next(c, "hello");
  expectEqual(await request(a, "to-room", room, "hello", "second"), [1], "to-room ack counts only C");
  expectEqual(await atC2, ["second"], "C received the second broadcast");
  log("broadcast checks done");
  return [a.io, b.io, c.io];
});
