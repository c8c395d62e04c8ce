// Drives the chat page in Chromium (Debian's /usr/bin/chromium, through
// playwright-core) against one running gateway, as a user would: sign-in,
// prompts sent with Enter, answers read while they stream, Stop, a new
// conversation, raw events, an error mid-stream, the rate limit, no budget
// line without a token budget, and a page on another origin calling the
// gateway through CORS. Run by
// tests/it/browser.rs, which starts the servers and checks the demo agent's
// side.
//
// Environment: GATEWAY_URL, CROSS_ORIGIN_URL (a blank page on another
// loopback origin allowed by CORS_ALLOW_ORIGINS), TOKEN (a valid JWT),
// LIMITED_TOKEN (a valid JWT of a subject this script runs over the limit),
// SIGN_IN ("paste" or "dev-button" with AUTH=jwt, "none" with AUTH=none),
// TARGET (a name for prompts), SCREENSHOT
// (a PNG path), USER_DATA_DIR (a fresh directory).
// Output: one JSON object per line on stdout ({"event": ...}); any failed
// check throws, and the process exits 1 with the reason on stderr.

import {
  agentTurns,
  ask,
  check,
  describeTurn,
  emit,
  env,
  runInChromium,
  TURN_TIMEOUT,
  watchNewestAnswer,
} from "./harness.mjs";

const gateway = env("GATEWAY_URL");
const crossOrigin = env("CROSS_ORIGIN_URL");
const token = env("TOKEN");
const limitedToken = env("LIMITED_TOKEN");
const signIn = env("SIGN_IN");
const target = env("TARGET");
const screenshot = env("SCREENSHOT");
const userDataDir = env("USER_DATA_DIR");

// The text values an answer showed while it streamed, in order.
function growth(samples) {
  const seen = [];
  for (const sample of samples) {
    if (sample.state === "streaming" && sample.text && sample.text !== seen[seen.length - 1]) {
      seen.push(sample.text);
    }
  }
  return seen;
}

async function run(browser) {
  const page = browser.pages()[0] || (await browser.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    // 401 and the like are logged by Chromium as failed loads; a blocked
    // script, style or request (the CSP) is what must never happen.
    if (message.type() === "error" && /Refused to|Content Security Policy/i.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  const invocations = [];
  const usages = [];
  page.on("response", async (response) => {
    if (new URL(response.url()).pathname === "/usage") {
      usages.push({ status: response.status(), body: await response.text().catch(() => "") });
    }
    if (new URL(response.url()).pathname === "/invocations") {
      const request = await response.request().allHeaders();
      invocations.push({
        status: response.status(),
        acceptEncoding: request["accept-encoding"] || "",
        contentEncoding: (await response.allHeaders())["content-encoding"] || "",
      });
    }
  });

  const loaded = await page.goto(`${gateway}/`);
  check(loaded.status() === 200, `GET / answered ${loaded.status()}`);
  const csp = (await loaded.allHeaders())["content-security-policy"] || "";
  check(csp.includes("default-src 'none'") && csp.includes("script-src 'self'"), `CSP: ${csp}`);
  const signInShown = await page.isVisible("#sign-in");
  check(signInShown === (signIn !== "none"), `the sign-in section shows: ${signInShown}`);

  // Keyboard and labels: every field has a label; Shift+Enter is a new line.
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, textarea")]
      .filter((field) => !field.closest("[hidden]") && field.labels.length === 0)
      .map((field) => field.id),
  );
  check(unlabelled.length === 0, `fields without a label: ${unlabelled}`);
  await page.focus("#prompt");
  await page.keyboard.type("line one");
  await page.keyboard.press("Shift+Enter");
  await page.keyboard.type("line two");
  check((await page.inputValue("#prompt")) === "line one\nline two", "Shift+Enter adds a line");
  check((await agentTurns(page)) === 0, "Shift+Enter does not send");
  await page.fill("#prompt", "");

  if (signIn !== "none") {
    // Not signed in: the gateway's 401 becomes the sign-in hint.
    const refused = await ask(page, `hello from ${target} without a token`);
    check(refused.state === "failed", `without a token: ${JSON.stringify(refused)}`);
    check(refused.errors.join(" ").includes("sign in again"), `sign-in hint: ${refused.errors}`);
    check(await page.isVisible("#notice"), "the notice shows");
    emit("no_token", { errors: refused.errors });

    if (signIn === "dev-button") {
      await page.click("#dev-token");
    } else {
      await page.fill("#token", token);
      await page.press("#token", "Enter");
    }
    await page.waitForFunction(() =>
      document.getElementById("sign-in-state").textContent.startsWith("Signed in"),
    );
    emit("signed_in", { how: signIn });
    await page.click("#new-conversation");
  }

  // The answer grows on screen while the agent streams (12 deltas, 200 ms apart).
  const first = await ask(page, `/events 12 200 1 ${target}-first`);
  check(first.state === "done", `first answer: ${JSON.stringify(first)}`);
  const steps = growth(first.samples);
  check(steps.length >= 3, `the answer grew in ${steps.length} steps: ${JSON.stringify(first.samples)}`);
  const shownAt = first.samples.find((s) => s.state === "streaming" && s.text).t;
  const doneAt = first.samples.find((s) => s.state === "done").t;
  check(doneAt - shownAt >= 1000, `first text at ${shownAt} ms, end at ${doneAt} ms: buffered`);
  check(first.text === Array.from({ length: 12 }, (_, i) => i + 1).join(" "), `text: ${first.text}`);
  check(/Tokens: input \d+, output 12, total \d+/.test(first.status), `usage: ${first.status}`);
  check(first.session && first.status.includes(`Session ${first.session}`), `session: ${first.status}`);
  check(!first.text.includes("----------") && !first.text.includes("{"), "no trailer in the text");
  emit("first_answer", { session: first.session, steps: steps.length, spread_ms: doneAt - shownAt });

  // A second turn keeps the session.
  const second = await ask(page, `${target} second turn`);
  check(second.state === "done", `second answer: ${JSON.stringify(second)}`);
  check(second.session === first.session, `second session ${second.session} vs ${first.session}`);
  check(second.text.includes(`${target} second turn`), `second text: ${second.text}`);
  emit("second_answer", { session: second.session });
  await page.screenshot({ path: screenshot });
  emit("screenshot", { path: screenshot });

  // Raw events: original mode, shown as sent.
  const raw = await ask(page, `/events 3 50 1 ${target}-raw`, { raw: true });
  check(raw.state === "done", `raw answer: ${JSON.stringify(raw)}`);
  check(raw.text.includes('data: {"event": {"contentBlockDelta"'), `raw events: ${raw.text}`);
  check(raw.session === first.session, `raw session ${raw.session}`);
  emit("raw_answer");

  // An error in the middle of the stream is an error line, not answer text.
  const failed = await ask(page, "/error-after 2");
  check(failed.state === "failed", `error answer: ${JSON.stringify(failed)}`);
  check(failed.text === "1 2", `text before the error: ${failed.text}`);
  check(failed.errors.length === 1 && failed.errors[0].startsWith("Error:"), `error line: ${failed.errors}`);
  emit("error_answer", { error: failed.errors[0] });

  // Stop: the request is aborted; tests/it/browser.rs checks the agent saw it.
  const before = await agentTurns(page);
  await page.evaluate(watchNewestAnswer);
  await page.fill("#prompt", `/events 80 100 1 ${target}-stop`);
  await page.press("#prompt", "Enter");
  await page.waitForFunction(
    (index) => {
      const turn = document.querySelectorAll("#conversation li.agent")[index];
      return turn && turn.querySelector(".text").textContent.split(" ").length >= 3;
    },
    before,
    { timeout: TURN_TIMEOUT },
  );
  await page.click("#stop");
  emit("stop_clicked", { session: first.session });
  await page.waitForFunction(
    (index) => document.querySelectorAll("#conversation li.agent")[index].dataset.state === "stopped",
    before,
  );
  const stopped = await describeTurn(page, before);
  check(stopped.status === "Stopped.", `after Stop: ${stopped.status}`);

  // A new conversation starts without the old session.
  await page.click("#new-conversation");
  check((await agentTurns(page)) === 0, "the conversation is cleared");
  const fresh = await ask(page, `/events 2 10 1 ${target}-fresh`);
  check(fresh.state === "done" && fresh.session && fresh.session !== first.session, `fresh: ${JSON.stringify(fresh)}`);
  emit("new_conversation", { session: fresh.session });

  // Over the rate limit (not without sign-in: every caller is one subject then).
  if (signIn !== "none") {
    await rateLimited(page);
  }

  // Chromium's own Accept-Encoding went out, and no stream came back
  // compressed (a whole error answer may be).
  check(invocations.length >= 6, `invocations seen: ${JSON.stringify(invocations)}`);
  for (const call of invocations) {
    check(/gzip/.test(call.acceptEncoding), `Chromium's Accept-Encoding: ${JSON.stringify(call)}`);
    if (call.status === 200) {
      check(["", "identity"].includes(call.contentEncoding), `compressed stream: ${JSON.stringify(call)}`);
    }
  }
  emit("encodings", { accept_encoding: invocations[0].acceptEncoding });

  // No token budget here (a request limit only): the page asked /usage
  // after its answers and shows no budget line.
  const counted = usages.filter((u) => u.status === 200);
  check(counted.length >= 5, `/usage answers: ${JSON.stringify(usages)}`);
  check(counted.every((u) => !("tokens" in JSON.parse(u.body))), `/usage: ${JSON.stringify(counted)}`);
  check(await page.isHidden("#budget"), `a budget line: ${await page.textContent("#budget")}`);
  emit("no_budget_line", { usage: JSON.parse(counted[0].body) });

  // Phone width: nothing wider than the screen.
  await page.setViewportSize({ width: 360, height: 700 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `wider than a phone screen by ${overflow} px`);

  check(problems.length === 0, `the page reported: ${problems.join("; ")}`);

  // Another origin calling the gateway (CORS_ALLOW_ORIGINS): it streams too.
  const other = await browser.newPage();
  await other.goto(crossOrigin);
  const cors = await other.evaluate(
    async ({ gateway, token }) => {
      const started = performance.now();
      const response = await fetch(`${gateway}/invocations`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ prompt: "/events 10 200", response: "transformed" }),
      });
      const reads = [];
      let body = "";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        body += decoder.decode(value, { stream: true });
        reads.push(performance.now() - started);
      }
      return {
        status: response.status,
        session: response.headers.get("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"),
        reads,
        ended: performance.now() - started,
        body,
      };
    },
    { gateway, token },
  );
  check(cors.status === 200, `cross-origin status: ${JSON.stringify(cors)}`);
  check(cors.body.startsWith("1 2 3 4 5 6 7 8 9 10\n----------\n"), `cross-origin body: ${cors.body}`);
  check(Boolean(cors.session), "the session header is exposed to the other origin");
  const early = cors.reads.filter((t) => t < cors.ended - 500).length;
  check(early >= 3, `cross-origin: ${early} reads before the end: ${JSON.stringify(cors.reads)}`);
  emit("cross_origin", { reads: cors.reads.length, early });
}

// The page says when to retry: the subject's quota is used up from the
// page first (quick 400s for a body that is not JSON), then one more prompt.
async function rateLimited(page) {
  await page.click("#sign-out");
  await page.fill("#token", limitedToken);
  await page.press("#token", "Enter");
  const used = await page.evaluate(async (limited) => {
    for (let sent = 0; sent < 500; sent++) {
      const response = await fetch("/invocations", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${limited}` },
        body: "not json",
      });
      if (response.status === 429) {
        return sent;
      }
    }
    return -1;
  }, limitedToken);
  check(used > 0, "the rate limit was never reached");
  const limited = await ask(page, "one more, over the limit");
  check(limited.state === "failed", `over the limit: ${JSON.stringify(limited)}`);
  check(/Too many requests: retry in \d+ s\./.test(limited.errors.join(" ")), `429: ${limited.errors}`);
  emit("rate_limited", { after: used, errors: limited.errors });
}

runInChromium(target, userDataDir, run, { options: { viewport: { width: 880, height: 620 } } });
