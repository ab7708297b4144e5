// A Node socket.io 4.8 server on @socket.io/redis-adapter 8.x: the Node side of every
// mixed-cluster test (cluster-node.mjs, emitter-peer.mjs). One pair of Redis clients
// (publisher + subscriber), as the adapter's README sets it up.

import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

/** `{http, io}`: a socket.io Server (not listening yet) joined to the cluster at `redisUrl`. */
export async function redisAdapterServer(redisUrl, adapterOptions = {}) {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("redis pub", e.message));
  sub.on("error", (e) => console.error("redis sub", e.message));
  await Promise.all([pub.connect(), sub.connect()]);
  const http = createServer();
  const io = new Server(http, { adapter: createAdapter(pub, sub, adapterOptions) });
  return { http, io };
}
