// The chat page with several agents (issue 17), in Chromium: the picker
// offers the caller's agents (not one the token's groups do not open),
// choosing another agent starts another conversation with it, and "New
// conversation" ends the session with DELETE. Run by tests/it/browser.rs,
// which starts a gateway with AGENTS and checks the demo agent's side: which
// runtime each prompt reached, and which sessions were ended.
//
// Environment: GATEWAY_URL, TOKEN (a valid JWT, in no Cognito group),
// TARGET (a name for prompts), SCREENSHOT (a PNG path), USER_DATA_DIR.
// Output: one JSON object per line on stdout; a failed check exits 1.

import { ask, check, emit, env, runInChromium } from "./harness.mjs";

const gateway = env("GATEWAY_URL");
const token = env("TOKEN");
const target = env("TARGET");
const screenshot = env("SCREENSHOT");
const userDataDir = env("USER_DATA_DIR");

// Waits for the page to have ended session `id` with the gateway; returns
// the status the gateway answered the DELETE with.
async function ended(page, id) {
  await page.waitForFunction(
    (id) => document.getElementById("conversation").dataset.ended === id,
    id,
  );
  return page.evaluate(() => document.getElementById("conversation").dataset.endStatus);
}

async function run(browser) {
  const page = browser.pages()[0] || (await browser.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  const deletes = [];
  page.on("response", (response) => {
    if (response.request().method() === "DELETE") {
      deletes.push({ path: new URL(response.url()).pathname, status: response.status() });
    }
  });

  await page.goto(`${gateway}/`);
  check(await page.isHidden("#agent-choice"), "a picker before signing in");
  await page.fill("#token", token);
  await page.press("#token", "Enter");
  await page.waitForSelector("#agent-choice:not([hidden])");
  const options = await page.$$eval("#agent option", (all) =>
    all.map((o) => ({ value: o.value, text: o.textContent, selected: o.selected })),
  );
  check(
    JSON.stringify(options.map((o) => o.value)) === JSON.stringify(["default", "sales"]),
    `the caller's agents only: ${JSON.stringify(options)}`,
  );
  check(options[0].selected, `the default agent first: ${JSON.stringify(options)}`);
  check(options[1].text === "sales: The second runtime", `a description: ${options[1].text}`);
  const label = await page.$eval("#agent", (select) => select.labels.length);
  check(label === 1, "the picker has a label");
  emit("agents_offered", { options: options.map((o) => o.value) });

  // The default agent keeps something in its session.
  const kept = await ask(page, `/remember ${target} on the default agent`);
  check(kept.state === "done", `default agent: ${JSON.stringify(kept)}`);
  const first = kept.session;
  emit("default_answer", { session: first });

  // Another agent: another conversation, the previous session ended.
  await page.selectOption("#agent", "sales");
  check((await page.locator("#conversation li").count()) === 0, "the conversation is cleared");
  const firstEnd = await ended(page, first);
  check(firstEnd === "204", `ending the default agent's session: ${firstEnd}`);
  const fresh = await ask(page, "/recall");
  check(fresh.state === "done" && fresh.text === "I remember nothing.", `sales: ${JSON.stringify(fresh)}`);
  check(fresh.session && fresh.session !== first, `a new session: ${fresh.session}`);
  const remembered = await ask(page, `/remember ${target} on sales`);
  const recalled = await ask(page, "/recall");
  check(remembered.session === fresh.session && recalled.session === fresh.session, "one session");
  check(recalled.text === `I remember: ${target} on sales.`, `sales recalls: ${recalled.text}`);
  emit("sales_answer", { session: fresh.session });
  await page.screenshot({ path: screenshot });

  // New conversation ends the session with the agent it belongs to.
  await page.click("#new-conversation");
  const secondEnd = await ended(page, fresh.session);
  check(secondEnd === "204", `ending the sales session: ${secondEnd}`);
  check(await page.inputValue("#agent") === "sales", "the agent stays chosen");
  const after = await ask(page, "/recall");
  check(after.text === "I remember nothing." && after.session !== fresh.session, `after: ${JSON.stringify(after)}`);
  emit("new_conversation", { session: after.session });

  check(
    JSON.stringify(deletes) ===
      JSON.stringify([
        { path: `/sessions/${first}`, status: 204 },
        { path: `/agents/sales/sessions/${fresh.session}`, status: 204 },
      ]),
    `the DELETEs: ${JSON.stringify(deletes)}`,
  );
  check(problems.length === 0, `the page reported: ${problems.join("; ")}`);
}

runInChromium(target, userDataDir, run, { options: { viewport: { width: 880, height: 620 } } });
