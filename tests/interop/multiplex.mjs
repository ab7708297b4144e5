// /chat and /notifications multiplexed on one Manager (one Engine.IO connection); an
// `echo` ack round trip on each namespace.
import { connected, check, expectEqual, log, manager, request, run } from "./lib.mjs";

run(async ({ url, transport }) => {
  const io = manager(url, transport);
  const chat = io.socket("/chat");
  const notifications = io.socket("/notifications");
  await Promise.all([connected(chat), connected(notifications)]);
  check(chat.io === notifications.io, "both namespaces share one Manager");
  check(io.engine.id && chat.id !== notifications.id, `one engine session ${io.engine.id}, distinct socket ids`);

  const [fromChat, fromNotifications] = await Promise.all([
    request(chat, "echo", "chat", { n: 1 }),
    request(notifications, "echo", "notifications", { n: 2 }),
  ]);
  expectEqual(fromChat, ["chat", { n: 1 }], "echo ack on /chat");
  expectEqual(fromNotifications, ["notifications", { n: 2 }], "echo ack on /notifications");

  // Leaving one namespace must not disturb the other.
  chat.disconnect();
  log("left /chat");
  expectEqual(await request(notifications, "echo", "still here"), ["still here"], "echo ack on /notifications after /chat left");
  return io;
});
