// What the browser scripts share: their environment, their output (one JSON
// object per line on stdout), their checks, asking the chat page a question
// and reading its answer, and Debian's Chromium started with the flags this
// machine's closed network needs.

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

// --- the chat page, as a user drives it -----------------------------------

export const TURN_TIMEOUT = 20000;

// Every change to the newest answer, with its time: how the text grew.
export function watchNewestAnswer() {
  window.__samples = [];
  const start = performance.now();
  const record = () => {
    const turns = document.querySelectorAll("#conversation li.agent");
    const turn = turns[turns.length - 1];
    if (turn) {
      window.__samples.push({
        t: performance.now() - start,
        state: turn.dataset.state,
        text: turn.querySelector(".text").textContent,
      });
    }
  };
  window.__observer?.disconnect();
  window.__observer = new MutationObserver(record);
  window.__observer.observe(document.getElementById("conversation"), {
    subtree: true,
    childList: true,
    characterData: true,
    attributes: true,
  });
}

export async function agentTurns(page) {
  return page.locator("#conversation li.agent").count();
}

// Types `text` into the message box and presses Enter; waits for the new
// answer to leave the "streaming" state; returns what it shows.
export async function ask(page, text, { raw = false } = {}) {
  const before = await agentTurns(page);
  await page.evaluate(watchNewestAnswer);
  if ((await page.isChecked("#raw")) !== raw) {
    await page.click("#raw");
  }
  await page.fill("#prompt", text);
  await page.press("#prompt", "Enter");
  const turn = page.locator("#conversation li.agent").nth(before);
  await turn.waitFor();
  await page.waitForFunction(
    (index) => document.querySelectorAll("#conversation li.agent")[index]?.dataset.state !== "streaming",
    before,
    { timeout: TURN_TIMEOUT },
  );
  return describeTurn(page, before);
}

export async function describeTurn(page, index) {
  const turn = page.locator("#conversation li.agent").nth(index);
  return {
    state: await turn.getAttribute("data-state"),
    session: await turn.getAttribute("data-session"),
    text: await turn.locator(".text").textContent(),
    status: await turn.locator(".status").textContent(),
    errors: await turn.locator(".error").allTextContents(),
    samples: await page.evaluate(() => window.__samples),
  };
}

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
