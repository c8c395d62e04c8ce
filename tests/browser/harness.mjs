// What the browser scripts share: their environment, their output (one JSON
// object per line on stdout), their checks, and Debian's Chromium started
// with the flags this machine's closed network needs.

import { chromium } from "playwright-core";

/** The environment variable `name`; throws when it is unset. */
export const env = (name) => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
};

export const emit = (event, fields = {}) =>
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);

export const check = (ok, message) => {
  if (!ok) {
    throw new Error(message);
  }
};

/**
 * Runs `run(browser)` in a fresh headless Chromium profile at
 * `userDataDir` (launch `options` and `extraArgs` added), then emits
 * `done`; a failure is written to stderr, naming `name`, and the process
 * exits 1.
 */
export function runInChromium(name, userDataDir, run, { options = {}, extraArgs = [] } = {}) {
  const main = async () => {
    const browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: "/usr/bin/chromium",
      headless: true,
      ...options,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        ...extraArgs,
      ],
    });
    try {
      await run(browser);
    } finally {
      await browser.close();
    }
  };
  main().then(
    () => emit("done"),
    (error) => {
      process.stderr.write(`browser test failed (${name}): ${error.stack || error}\n`);
      process.exitCode = 1;
    },
  );
}
