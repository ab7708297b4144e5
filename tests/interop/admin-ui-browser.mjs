// The official Admin UI page (@socket.io/admin-ui 0.5.1's ui/dist, served by
// `rtctl admin-ui`) in a real headless Chromium, logged in to a cluster of our nodes:
// the Servers page must list every node, the Sockets page a socket connected to another
// node than the one the page logged in to. Screenshots of both pages are kept.
//
// Usage: NEXTAUTH_SECRET=… ADMIN_USER=… ADMIN_PASSWORD=… CHROMIUM=/usr/bin/chromium
//        EXPECT_SERVERS=admin-a,admin-b,…
//        node admin-ui-browser.mjs <page-url> <node-url>,<node-url>… <screenshot-dir>
// (the page logs in to the first node; the test socket connects to the last, which may
// be a Node server running instrument()).

import fs from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";
import { encode } from "next-auth/jwt";
import { check, connected, log, manager, runScript, sleep } from "./lib.mjs";

const [pageUrl, nodeList, shots] = process.argv.slice(2);
const nodes = (nodeList ?? "").split(",");
const { NEXTAUTH_SECRET: secret, ADMIN_USER: user, ADMIN_PASSWORD: password } = process.env;
const expectServers = (process.env.EXPECT_SERVERS ?? "admin-a,admin-b").split(",");

/** Waits until the page's visible text contains every one of `needles`. */
async function waitForText(page, needles, what) {
  const deadline = Date.now() + 15000;
  let text = "";
  while (Date.now() < deadline) {
    text = await page.evaluate(() => document.body.innerText);
    if (needles.every((n) => text.includes(n))) return text;
    await sleep(250);
  }
  throw new Error(`${what}: ${JSON.stringify(needles)} not all on the page; it shows:\n${text}`);
}

async function main() {
  check(pageUrl && nodes.length >= 2 && shots && secret && user && password, "arguments and environment");
  fs.mkdirSync(shots, { recursive: true });
  const token = await encode({ token: { name: "carol", sub: `carol-${process.pid}` }, secret, maxAge: 3600 });
  const carol = await connected(
    manager(nodes[nodes.length - 1], "websocket").socket("/", { auth: { token } }),
    "carol on the last node",
  );

  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    page.on("console", (m) => m.type() === "error" && log(`page console: ${m.text()}`));
    await page.goto(pageUrl, { waitUntil: "domcontentloaded" });
    // The login dialog: server URL, username, password.
    await page.waitForSelector("form input", { timeout: 15000 });
    const inputs = await page.$$("form input[type=text], form input[type=password]");
    check(inputs.length >= 3, `the login form has its fields (${inputs.length})`);
    const fill = async (input, value) => {
      await input.click({ clickCount: 3 });
      await page.keyboard.press("Backspace");
      await input.type(value);
    };
    await fill(inputs[0], nodes[0]);
    await fill(inputs[1], user);
    await fill(inputs[2], password);
    await page.click("form button[type=submit]");
    // Logged in once the dialog has closed (a refused login keeps it open, with the reason).
    await page
      .waitForFunction(() => !document.querySelector(".v-dialog--active"), { timeout: 15000 })
      .catch(async () => {
        const text = await page.evaluate(() => document.body.innerText);
        throw new Error(`the login dialog stayed open:\n${text}`);
      });

    await page.goto(`${pageUrl}#/servers/`, { waitUntil: "domcontentloaded" });
    const servers = await waitForText(page, expectServers, "the Servers page");
    await sleep(600); // let the page's transitions finish before the picture
    await page.screenshot({ path: path.join(shots, "servers.png"), fullPage: true });
    log(`servers page: ${servers.replace(/\s+/g, " ").slice(0, 400)}`);

    await page.goto(`${pageUrl}#/sockets/`, { waitUntil: "domcontentloaded" });
    const sockets = await waitForText(page, [carol.id], "the Sockets page");
    await sleep(600);
    await page.screenshot({ path: path.join(shots, "sockets.png"), fullPage: true });
    log(`sockets page: ${sockets.replace(/\s+/g, " ").slice(0, 400)}`);
  } finally {
    await browser.close();
    carol.close();
  }
}

runScript(main, 60000);
