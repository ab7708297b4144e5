// Polling → websocket upgrade with acks in flight: 200 `echo` acks, sent while the upgrade
// happens and after it, all arrive in order; the transport ends up "websocket".
import { check, connect, expectEqual, log, next, request, run, sleep } from "./lib.mjs";

const TOTAL = 200;

run(async ({ url, transport }) => {
  if (transport !== "default") throw new Error("upgrade.mjs needs the default transports (polling then websocket)");
  const socket = await connect(url, transport, "/chat");
  const engine = socket.io.engine;
  log(`transport at connect: ${engine.transport.name}`);
  const upgraded = engine.transport.name === "websocket" ? Promise.resolve() : next(engine, "upgrade", 5000);

  const arrivals = [];
  const answers = [];
  let beforeUpgrade = 0;
  let sent = 0;
  const send = () => {
    const i = sent++;
    if (engine.transport.name === "polling") beforeUpgrade++;
    answers.push(request(socket, "echo", i, { i }).then((answer) => { arrivals.push(i); return answer; }));
  };

  // A burst right away (the upgrade probe is in progress), then a trickle across the upgrade.
  while (sent < 50) send();
  while (sent < TOTAL) {
    send();
    await sleep(sent % 10 === 0 ? 5 : 0);
  }
  await upgraded;
  log(`upgrade event; ${beforeUpgrade} of ${TOTAL} echoes were sent while on polling`);
  check(engine.transport.name === "websocket", "transport is websocket after the upgrade event");

  const results = await Promise.all(answers);
  expectEqual(results, Array.from({ length: TOTAL }, (_, i) => [i, { i }]), `all ${TOTAL} echo answers`);
  expectEqual(arrivals, Array.from({ length: TOTAL }, (_, i) => i), `the ${TOTAL} acks arrived in order`);
  expectEqual(await request(socket, "echo", "after upgrade"), ["after upgrade"], "echo after the upgrade");
  check(engine.transport.name === "websocket", "still on websocket");
  return socket.io;
});
