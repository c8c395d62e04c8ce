// The chat page's token budget line in Chromium (Debian's /usr/bin/chromium,
// through playwright-core), against a gateway with a small TOKEN_BUDGET (a
// daily window, the memory store): after sign-in the line shows the whole
// budget; after each answer, the budget less the answers' tokens as the
// page showed them (the demo agent's usage), which GET /usage confirms; once
// spent, the line says so, and the next prompt is refused (429
// token_budget_exhausted) with the reset time instead of failing silently.
// Run by tests/it/browser.rs, which starts the servers and checks the
// gateway's log lines and the demo agent's requests.
//
// Environment: GATEWAY_URL, TOKEN (a valid JWT), BUDGET (the gateway's
// TOKEN_BUDGET), SCREENSHOT (a PNG path), USER_DATA_DIR (a fresh directory).
// Output: one JSON object per line on stdout ({"event": ...}); any failed
// check throws, and the process exits 1 with the reason on stderr.

import { ask, check, emit, env, runInChromium, TURN_TIMEOUT } from "./harness.mjs";

const gateway = env("GATEWAY_URL");
const token = env("TOKEN");
const budget = Number(env("BUDGET"));
const screenshot = env("SCREENSHOT");
const userDataDir = env("USER_DATA_DIR");

// Answer n is 400 * n numbers, one to a delta (a token each): at least 400
// tokens.
const question = (n) => `/events ${400 * n} 0 1 budget-${n}`;
const MOST_ANSWERS = Math.ceil(budget / 400) + 1;

/** GET /usage with the token, from Node (not through the page). */
async function usage() {
  const response = await fetch(`${gateway}/usage`, { headers: { Authorization: `Bearer ${token}` } });
  check(response.status === 200, `/usage answered ${response.status}`);
  return response.json();
}

// Waits until the budget line shows `expected`; returns what it shows.
async function budgetLineIs(page, expected) {
  try {
    await page.waitForFunction(
      (expected) => {
        const line = document.getElementById("budget");
        return !line.hidden && line.textContent === expected;
      },
      expected,
      { timeout: TURN_TIMEOUT },
    );
  } catch (_) {
    const shown = await page.evaluate(() => {
      const line = document.getElementById("budget");
      return line.hidden ? "(hidden)" : line.textContent;
    });
    check(false, `the budget line shows ${JSON.stringify(shown)}, not ${JSON.stringify(expected)}`);
  }
}

async function run(browser) {
  const page = browser.pages()[0] || (await browser.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  const refusals = [];
  page.on("response", (response) => {
    if (new URL(response.url()).pathname === "/invocations" && response.status() === 429) {
      refusals.push({ at: Date.now(), retryAfter: response.headers()["retry-after"] });
    }
  });

  const loaded = await page.goto(`${gateway}/`);
  check(loaded.status() === 200, `GET / answered ${loaded.status()}`);
  check((await page.getAttribute("#budget", "role")) === "status", "the budget line is a live status");
  check(await page.isHidden("#budget"), "a budget line before sign-in");

  // The window: a day, so it resets at 00:00 UTC.
  const start = await usage();
  check(start.tokens?.limit === budget && start.tokens.used === 0, `/usage at the start: ${JSON.stringify(start)}`);
  check(start.tokens.resetsAt.endsWith("T00:00:00Z"), `a daily window ends at midnight: ${start.tokens.resetsAt}`);
  const resetsAt = start.tokens.resetsAt;
  const until = `${resetsAt.slice(11, 16)} UTC`;
  const left = (remaining) =>
    remaining > 0
      ? `${remaining.toLocaleString("en-US")} of ${budget.toLocaleString("en-US")} tokens left until ${until}`
      : `Token budget spent until ${until}.`;

  // Signed in: the whole budget.
  await page.fill("#token", token);
  await page.press("#token", "Enter");
  await budgetLineIs(page, left(budget));
  emit("signed_in", { line: await page.textContent("#budget") });

  // Answers of growing size until the budget is spent: after each, the line
  // shows the budget less the tokens of the answers' usage (as the page's
  // status shows it), in the visitor's locale (en-US here: "1,595").
  let spent = 0;
  const answers = [];
  for (let n = 1; spent < budget; n++) {
    check(n <= MOST_ANSWERS, `${n} answers did not spend ${budget} tokens (${spent})`);
    const answer = await ask(page, question(n));
    check(answer.state === "done", `answer ${n}: ${JSON.stringify(answer)}`);
    const total = Number(/total (\d+)/.exec(answer.status)?.[1]);
    check(total > 0, `answer ${n}'s usage: ${answer.status}`);
    spent += total;
    const remaining = Math.max(0, budget - spent);
    await budgetLineIs(page, left(remaining));
    const counted = await usage();
    check(
      counted.tokens.used === spent && counted.tokens.remaining === remaining,
      `after ${spent} tokens, /usage: ${JSON.stringify(counted)}`,
    );
    answers.push(total);
    emit("answer", { n, total, spent, line: await page.textContent("#budget") });
  }
  check(answers.length >= 2, `spent in one answer: ${answers}`);
  // Spent: the next prompt is refused before the agent, and says until when.
  const refused = await ask(page, "one more, over the budget");
  const message = `The token budget is spent: it resets at ${until}.`;
  check(refused.state === "failed", `over the budget: ${JSON.stringify(refused)}`);
  check(refused.errors.length === 1 && refused.errors[0] === message, `the error line: ${refused.errors}`);
  check((await page.textContent("#notice")) === message && (await page.isVisible("#notice")), "the notice");
  await budgetLineIs(page, left(0));
  check(refusals.length === 1, `429 answers: ${JSON.stringify(refusals)}`);
  // Retry-After counts the same seconds to the window's end.
  const end = Date.parse(resetsAt) / 1000;
  const retryAt = Math.floor(refusals[0].at / 1000) + Number(refusals[0].retryAfter);
  check(Math.abs(retryAt - end) <= 2, `Retry-After ${refusals[0].retryAfter} s, the window ends ${resetsAt}`);
  emit("exhausted", { error: refused.errors[0], line: await page.textContent("#budget"), spent, answers });
  await page.screenshot({ path: screenshot });
  emit("screenshot", { path: screenshot });

  // Phone width: the line wraps, nothing wider than the screen.
  await page.setViewportSize({ width: 360, height: 700 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `wider than a phone screen by ${overflow} px`);
  check(problems.length === 0, `the page reported: ${problems.join("; ")}`);
}

runInChromium("budget", userDataDir, run, { options: { viewport: { width: 880, height: 620 }, locale: "en-US" } });
