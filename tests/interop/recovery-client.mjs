// Real socket.io-client 4.8 sockets a test drives line by line: the client side of the
// connection-state-recovery tests (tests/it/recovery.rs). Reconnection is manual (a
// test says when), so "the server emitted while the client was away" is exact.
//
//   node recovery-client.mjs
//
// Commands, one JSON object per stdin line (`name` picks the socket):
//   {"cmd":"connect","name":"a","url":"http://127.0.0.1:P","nsp":"/","auth":{…},
//    "transports":["websocket"]}                    a new Manager + socket
//   {"cmd":"emit","name":"a","event":"join","args":["r"]}   emit with an ack
//   {"cmd":"drop","name":"a"}        closes the transport (`socket.io.engine.close()`):
//                                     the server sees "transport close"
//   {"cmd":"reconnect","name":"a"}   `socket.connect()`: CONNECT with pid + offset
//   {"cmd":"disconnect","name":"a"}  `socket.disconnect()`: explicit, never recovered
// Prints one JSON object per line:
//   {"ready":true}
//   {"name":"a","connect":{"id":"…","recovered":false}}
//   {"name":"a","event":"m","args":[…]}     every event, offset included (last argument)
//   {"name":"a","ack":[…]}                  the answer to an `emit`
//   {"name":"a","disconnect":"transport close"}
//   {"name":"a","connect_error":{"message":…,"data":…}}
// Exits when stdin closes.

import { createInterface } from "node:readline";
import { Manager } from "socket.io-client";

const out = (obj) => console.log(JSON.stringify(obj));
const plain = (arg) => (Buffer.isBuffer(arg) ? { $binary: [...arg] } : arg);
const sockets = new Map();

function connect({ name, url, nsp = "/", auth = {}, transports = ["websocket"] }) {
  const manager = new Manager(url, { transports, reconnection: false, forceNew: true });
  const socket = manager.socket(nsp, { auth });
  socket.on("connect", () => out({ name, connect: { id: socket.id, recovered: socket.recovered } }));
  socket.on("disconnect", (reason) => out({ name, disconnect: reason }));
  socket.on("connect_error", (err) => out({ name, connect_error: { message: err.message, data: err.data } }));
  socket.onAny((event, ...args) => out({ name, event, args: args.map(plain) }));
  sockets.set(name, socket);
}

const commands = {
  connect,
  emit: ({ name, event, args = [] }) =>
    sockets.get(name).emit(event, ...args, (...answer) => out({ name, ack: answer.map(plain) })),
  drop: ({ name }) => sockets.get(name).io.engine.close(),
  reconnect: ({ name }) => sockets.get(name).connect(),
  disconnect: ({ name }) => sockets.get(name).disconnect(),
};

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const cmd = JSON.parse(line);
  commands[cmd.cmd](cmd);
});
lines.on("close", () => process.exit(0));
out({ ready: true });
