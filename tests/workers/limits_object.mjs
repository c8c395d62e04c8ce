// Sends bodies straight to one `LimitsCounter` Durable Object of the built
// Worker bundle, in Miniflare (the simulator `wrangler dev` runs on; a
// dependency of wrangler), with the bindings of wrangler.toml's LIMITS:
//   node tests/workers/limits_object.mjs BUILD_DIR < bodies.json
// stdin: a JSON array of request bodies (strings); stdout: a JSON array of
// the answers, `{"status": N, "body": "..."}`, in order. Used by
// tests/it/conformance/worker_limits.rs, which says what they must be.

import { Miniflare } from "miniflare";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

const root = resolve(process.argv[2] ?? "build");
const bodies = JSON.parse(readFileSync(0, "utf8"));
const mf = new Miniflare({
  modulesRoot: root,
  modules: [
    { type: "ESModule", path: `${root}/index.js` },
    { type: "CompiledWasm", path: `${root}/index_bg.wasm` },
  ],
  compatibilityDate: "2026-04-20",
  durableObjects: { LIMITS: { className: "LimitsCounter", useSQLite: true } },
});
try {
  const namespace = await mf.getDurableObjectNamespace("LIMITS");
  const stub = namespace.get(namespace.idFromName("limits-object-check"));
  const answers = [];
  for (const body of bodies) {
    const response = await stub.fetch("https://limits.agent-edge.internal/call", {
      method: "POST",
      body,
    });
    answers.push({ status: response.status, body: await response.text() });
  }
  process.stdout.write(`${JSON.stringify(answers)}\n`);
} finally {
  await mf.dispose();
}
