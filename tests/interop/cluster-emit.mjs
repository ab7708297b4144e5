// Publishes with @socket.io/redis-emitter 5.x, as a Next.js route would, then exits.
//
//   node cluster-emit.mjs <redis-url> <nsp> <json: [{to?, except?, event, args}]>
//
// Each step becomes `emitter.of(nsp)[.to(r)...][.except(r)...].emit(event, ...args)`;
// an argument {"$binary": [bytes]} is sent as a Buffer.

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
  op.emit(step.event, ...args);
  console.log(`emitted ${step.event}`);
}
await client.quit();
