// Mints and decodes NextAuth.js v4 session tokens with the real `next-auth/jwt` (pinned in
// package.json), so tests/it/auth.rs can prove that realtime's auth module and next-auth agree
// in both directions. No mocks: this is the code a Next.js app runs.
//
// Usage: node mint-nextauth.mjs < request.json
//   {"op":"encode","secret":"...","claims":{...},"maxAge":3600}  -> {"token":"...","library":"next-auth@4.x"}
//   {"op":"decode","secret":"...","token":"..."}                 -> {"ok":true,"payload":{...}}
//                                                                 | {"ok":false,"error":"..."}
// The request comes on stdin (a secret in argv would show in `ps`). The answer is one JSON
// line on stdout; a rejected token is an answer (`ok: false`), not a failure. Exit status 1
// means the request itself was bad or the library is missing (message on stderr).

import { readFileSync } from "node:fs";
import { encode, decode } from "next-auth/jwt";

const library = `next-auth@${JSON.parse(
  readFileSync(new URL("./node_modules/next-auth/package.json", import.meta.url), "utf8"),
).version}`;

async function main() {
  const request = JSON.parse(readFileSync(0, "utf8"));
  if (typeof request.secret !== "string") throw new Error("`secret` (a string) is required");
  switch (request.op) {
    case "encode": {
      // next-auth sets iat, exp (now + maxAge) and jti itself, as it does for a session.
      const token = await encode({
        token: request.claims ?? {},
        secret: request.secret,
        ...(request.maxAge === undefined ? {} : { maxAge: request.maxAge }),
      });
      return { token, library };
    }
    case "decode":
      try {
        const payload = await decode({ token: request.token, secret: request.secret });
        return payload ? { ok: true, payload, library } : { ok: false, error: "no token", library };
      } catch (err) {
        return { ok: false, error: err?.code ?? err?.message ?? String(err), library };
      }
    default:
      throw new Error(`unknown op ${JSON.stringify(request.op)} (expected "encode" or "decode")`);
  }
}

main().then(
  (answer) => console.log(JSON.stringify(answer)),
  (err) => {
    console.error(`[mint-nextauth] ${err?.stack ?? err}`);
    process.exitCode = 1;
  },
);
