// Shared helpers for the interop scripts: argument parsing, client options, progress output,
// an overall timeout, and small promise utilities around socket.io-client.
//
// Every script is run as `node <script>.mjs <server-url> [default|websocket|polling]` by
// tests/it/interop.rs. Progress goes to stdout (one line per step), failures to stderr; the
// exit code is 0 on success and 1 on failure or timeout.

import { isDeepStrictEqual, inspect } from "node:util";
import path from "node:path";
import { createRequire } from "node:module";
import { Manager } from "socket.io-client";

const clientVersion = createRequire(import.meta.url)("socket.io-client/package.json").version;

const script = path.basename(process.argv[1] ?? "interop", ".mjs");

/** Prints one progress line to stdout. */
export function log(...parts) {
  console.log(`[${script}] ${parts.join(" ")}`);
}

/** Formats a value for messages (Buffers shown as bytes, nested objects in full). */
export function show(value) {
  return inspect(value, { depth: null, breakLength: Infinity });
}

/** Throws unless `actual` deep-equals `expected` (strict; Buffers compared by type and bytes). */
export function expectEqual(actual, expected, what) {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
  log("ok:", what);
}

/** Throws with `message` unless `condition` holds. */
export function check(condition, message) {
  if (!condition) throw new Error(message);
  log("ok:", message);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `<url> [transport]` from argv; transport is "default" (polling then upgrade), "websocket" or "polling". */
export function parseArgs() {
  const [url, transport = "default"] = process.argv.slice(2);
  if (!url) usage("missing <server-url>");
  if (!["default", "websocket", "polling"].includes(transport)) usage(`unknown transport "${transport}"`);
  return { url, transport };
}

function usage(problem) {
  console.error(`[${script}] ${problem}\nusage: node ${script}.mjs <server-url> [default|websocket|polling]`);
  process.exit(2);
}

/** Client options for `transport`; no reconnection unless `extra` asks for it. */
export function clientOptions(transport, extra = {}) {
  const options = { reconnection: false, timeout: 5000, ...extra };
  if (transport !== "default") options.transports = [transport];
  return options;
}

/** A fresh Manager (engine connection) for `url`; sockets come from `manager.socket(nsp)`. */
export function manager(url, transport, extra = {}) {
  return new Manager(url, { autoConnect: false, ...clientOptions(transport, extra) });
}

/** Resolves once `socket` is connected, rejects on `connect_error`. */
export function connected(socket, what = socket.nsp) {
  return new Promise((resolve, reject) => {
    if (socket.connected) return resolve(socket);
    socket.once("connect", () => {
      log(`connected ${what} id=${socket.id} transport=${socket.io.engine.transport.name}`);
      resolve(socket);
    });
    socket.once("connect_error", (err) => reject(new Error(`connect_error on ${what}: ${err.message}`)));
    socket.connect();
  });
}

/** Opens namespace `nsp` on a new Manager and waits for the connection. */
export async function connect(url, transport, nsp = "/", extra = {}) {
  return connected(manager(url, transport, extra).socket(nsp));
}

/** Resolves with the argument list of the next `event` on `emitter`, rejects after `ms`. */
export function next(emitter, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`no "${event}" within ${ms} ms`));
    }, ms);
    const handler = (...args) => {
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(args);
    };
    emitter.on(event, handler);
  });
}

/** Emits `event` with an ack callback; resolves with the ack's argument list, rejects after 3 s. */
export function request(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(3000).emit(event, ...args, (err, ...answer) => {
      if (err) reject(new Error(`no ack for "${event}" on ${socket.nsp}: ${err.message}`));
      else resolve(answer);
    });
  });
}

/**
 * Runs `main({ url, transport })` under an overall timeout; exits 0 when it resolves and 1
 * (with the reason on stderr) when it throws or the timeout fires. Sockets and managers it
 * returns in an array are closed first. The timeout can be set with INTEROP_TIMEOUT_MS.
 */
export function run(main, { timeoutMs = Number(process.env.INTEROP_TIMEOUT_MS) || 15000 } = {}) {
  const args = parseArgs();
  log(`start url=${args.url} transport=${args.transport} socket.io-client@${clientVersion}`);
  runScript(async () => {
    const open = (await main(args)) ?? [];
    for (const closable of [open].flat()) closable?.close?.();
  }, timeoutMs);
}

/**
 * Runs `main()` under an overall timeout of `timeoutMs`: exits 0 when it resolves, 1
 * (with the reason on stderr) when it throws or the timeout fires.
 */
export function runScript(main, timeoutMs = Number(process.env.INTEROP_TIMEOUT_MS) || 15000) {
  const timer = setTimeout(() => {
    console.error(`[${script}] FAIL: timed out after ${timeoutMs} ms`);
    process.exit(1);
  }, timeoutMs);
  Promise.resolve()
    .then(main)
    .then(
      () => {
        clearTimeout(timer);
        log("PASS");
        process.exit(0);
      },
      (err) => {
        console.error(`[${script}] FAIL: ${err?.stack ?? err}`);
        process.exit(1);
      },
    );
}
