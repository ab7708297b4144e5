// Mints and decodes Auth.js v5 session tokens with the real `@auth/core/jwt` (pinned in
// package.json), so tests/it/auth.rs can prove that realtime's auth module and Auth.js agree
// in both directions. No mocks: this is the code a Next.js app on Auth.js v5 runs.
//
// Usage: node mint-authjs.mjs < request.json
//   {"op":"encode","secret":"...","salt":"authjs.session-token","claims":{...},"maxAge":3600}
//       -> {"token":"...","library":"@auth/core@0.x"}
//   {"op":"decode","secret":"...","salt":"authjs.session-token","token":"..."}
//       -> {"ok":true,"payload":{...}} | {"ok":false,"error":"..."}
// Auth.js derives its key with the session cookie's name as the HKDF salt, so `salt` is the
// cookie name (`authjs.session-token`, or `__Secure-authjs.session-token` on HTTPS); it
// defaults to `authjs.session-token`. The request comes on stdin (a secret in argv would show
// in `ps`). The answer is one JSON line on stdout; a rejected token is an answer (`ok: false`),
// not a failure. Exit status 1 means the request itself was bad (message on stderr).

import { readFileSync } from "node:fs";
import { encode, decode } from "@auth/core/jwt";

const library = `@auth/core@${JSON.parse(
  readFileSync(new URL("./node_modules/@auth/core/package.json", import.meta.url), "utf8"),
).version}`;

async function main() {
  const request = JSON.parse(readFileSync(0, "utf8"));
  if (typeof request.secret !== "string") throw new Error("`secret` (a string) is required");
  const salt = request.salt ?? "authjs.session-token";
  switch (request.op) {
    case "encode": {
      // Auth.js sets iat, exp (now + maxAge) and jti itself, as it does for a session.
      const token = await encode({
        token: request.claims ?? {},
        secret: request.secret,
        salt,
        ...(request.maxAge === undefined ? {} : { maxAge: request.maxAge }),
      });
      return { token, library };
    }
    case "decode":
      try {
        const payload = await decode({ token: request.token, secret: request.secret, salt });
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
    console.error(`[mint-authjs] ${err?.stack ?? err}`);
    process.exitCode = 1;
  },
);
