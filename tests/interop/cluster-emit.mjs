// Publishes with @socket.io/redis-emitter 5.x, as a Next.js route would, then exits.
//
//   node cluster-emit.mjs <redis-url> <nsp> <json: [{op?, to?, except?, ...}]>
//
// Each step is `emitter.of(nsp)[.to(r)...][.except(r)...]` then, by `op`:
//   "emit" (the default): .emit(event, ...args); an argument {"$binary": [bytes]} is
//     sent as a Buffer;
//   "socketsJoin" / "socketsLeave": (rooms);  "disconnectSockets": (close);
//   "serverSideEmit": (event, ...args) on the emitter itself (no rooms).
// Prints `emitted <event or op>` after each step.

import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

const [redisUrl, nsp, stepsJson] = process.argv.slice(2);
const client = createClient({ url: redisUrl });
await client.connect();
const emitter = new Emitter(client).of(nsp);
for (const step of JSON.parse(stepsJson)) {
  let op = emitter;
  for (const r of step.to ?? []) op = op.to(r);
  for (const r of step.except ?? []) op = op.except(r);
  const args = (step.args ?? []).map((a) => (a && a.$binary ? Buffer.from(a.$binary) : a));
  switch (step.op ?? "emit") {
    case "emit":
      op.emit(step.event, ...args);
      break;
    case "socketsJoin":
      op.socketsJoin(step.rooms);
      break;
    case "socketsLeave":
      op.socketsLeave(step.rooms);
      break;
    case "disconnectSockets":
      op.disconnectSockets(step.close);
      break;
    case "serverSideEmit":
      emitter.serverSideEmit(step.event, ...args);
      break;
    default:
      throw new Error(`unknown op ${step.op}`);
  }
  console.log(`emitted ${step.event ?? step.op}`);
}
await client.quit();
