// A page on another site against an `AUTH=none` gateway on loopback, in
// Chromium (Debian's /usr/bin/chromium, through playwright-core), as issue 14
// (item 2) asks: every request such a page can send without a CORS preflight
// (fetch in no-cors mode with Blob, JSON-typed Blob, text/plain, form-encoded
// and multipart bodies, a beacon, HTML form posts, one of them the
// `enctype="text/plain"` trick that makes a JSON body) reaches the gateway
// and is refused with 415 before the agent is called; then the control, the
// gateway's own page with `Content-Type: application/json`, reaches the
// agent. Last, DNS rebinding: a page whose name (evil.test) resolves to
// 127.0.0.1 gets 421 from the gateway and from the development issuer, and
// so neither an answer nor a token. Run by tests/it/browser.rs, which starts
// the servers and checks the gateway's log lines and the demo agent's
// requests again.
//
// Environment: GATEWAY_URL (http://127.0.0.1:<port>), ATTACKER_URL (the
// attacker's page, http://attacker.test:<port>, a name only Chromium
// resolves), REPORT_URL (on the attacker's server, for this script only: the
// gateway's log lines and how many requests the demo agent received),
// REBOUND_GATEWAY_URL and REBOUND_ISSUER_URL (http://evil.test:<port> of the
// gateway and of the development issuer), ISSUER_URL, HOST_RULES (Chromium's
// --host-resolver-rules), USER_DATA_DIR (a fresh directory).
// Output: one JSON object per line on stdout ({"event": ...}); any failed
// check throws, and the process exits 1 with the reason on stderr.

import { check, emit, env, runInChromium } from "./harness.mjs";

const gateway = env("GATEWAY_URL");
const attacker = env("ATTACKER_URL");
const reportUrl = env("REPORT_URL");
const reboundGateway = env("REBOUND_GATEWAY_URL");
const issuer = env("ISSUER_URL");
const reboundIssuer = env("REBOUND_ISSUER_URL");
const hostRules = env("HOST_RULES");
const userDataDir = env("USER_DATA_DIR");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The gateway's request log lines of POSTs (a page load may bring a
// favicon request at any time) and the demo agent's request count.
async function report() {
  const response = await fetch(reportUrl);
  check(response.ok, `report: ${response.status}`);
  const { gateway: lines, origin_requests: originRequests } = await response.json();
  return {
    lines: lines.map((line) => JSON.parse(line)).filter((line) => "status" in line && line.method === "POST"),
    originRequests,
  };
}

// Waits for the gateway's log line of a POST after the `seen` first ones.
async function nextLogLine(seen) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const { lines, originRequests } = await report();
    if (lines.length > seen) {
      check(lines.length === seen + 1, `more than one log line: ${JSON.stringify(lines.slice(seen))}`);
      return { line: lines[seen], originRequests };
    }
    check(Date.now() < deadline, `no log line after ${seen}: the request never reached the gateway`);
    await sleep(25);
  }
}

const BODY = '{"prompt":"a cross-site page speaking"}';

// What a page on another site can send without a CORS preflight. Each runs
// in the attacker's page and says what the page could observe.
async function sendFromPage(page, name) {
  return page.evaluate(
    async ({ url, name, body }) => {
      const multipart = new FormData();
      multipart.append("prompt", "a cross-site page speaking");
      const sends = {
        // No declared type at all: what issue 14 found accepted.
        no_cors_blob: () => fetch(url, { method: "POST", mode: "no-cors", body: new Blob([body]) }),
        // The Blob's type is not safelisted: no-cors mode drops it.
        no_cors_json_blob: () =>
          fetch(url, { method: "POST", mode: "no-cors", body: new Blob([body], { type: "application/json" }) }),
        // The same for an explicit header.
        no_cors_json_header: () =>
          fetch(url, { method: "POST", mode: "no-cors", headers: { "Content-Type": "application/json" }, body }),
        no_cors_text_plain: () =>
          fetch(url, { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body }),
        // A simple CORS request: sent without preflight, its answer unreadable.
        cors_text_plain: () => fetch(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body }),
        no_cors_form_urlencoded: () =>
          fetch(url, {
            method: "POST",
            mode: "no-cors",
            body: new URLSearchParams({ prompt: "a cross-site page speaking" }),
          }),
        no_cors_multipart: () => fetch(url, { method: "POST", mode: "no-cors", body: multipart }),
        beacon_text: async () => ({ beacon: navigator.sendBeacon(url, body) }),
      };
      try {
        const answer = await sends[name]();
        return "beacon" in answer ? answer : { type: answer.type, status: answer.status };
      } catch (error) {
        return { error: String(error) };
      }
    },
    { url: `${gateway}/invocations`, name, body: BODY },
  );
}

// An HTML form on the attacker's page posted to the gateway (a navigation).
// With enctype="text/plain" the body is `{"prompt":"...","x":"="}`: JSON.
async function postForm(page, enctype) {
  // Waits for the navigation to finish loading, so that the next one does
  // not interrupt it.
  const [response] = await Promise.all([
    page.waitForNavigation({ url: `${gateway}/invocations` }),
    page.evaluate(
      ({ url, enctype }) => {
        const form = document.createElement("form");
        form.method = "post";
        form.action = url;
        form.enctype = enctype;
        const field = document.createElement("input");
        field.type = "hidden";
        if (enctype === "text/plain") {
          field.name = '{"prompt":"a cross-site form speaking","x":"';
          field.value = '"}';
        } else {
          field.name = "prompt";
          field.value = "a cross-site form speaking";
        }
        form.append(field);
        document.body.append(form);
        form.submit();
      },
      { url: `${gateway}/invocations`, enctype },
    ),
  ]);
  const request = response.request();
  return {
    status: response.status(),
    contentType: (await request.allHeaders())["content-type"] || "",
    body: request.postData(),
  };
}

async function run(browser) {
  const page = browser.pages()[0] || (await browser.newPage());
  // The Content-Type each request to the gateway went out with, as Chromium
  // reports it (for the record: the gateway's answer is what is checked).
  const sent = [];
  browser.on("request", (request) => {
    if (request.url() === `${gateway}/invocations`) {
      sent.push(request.headers()["content-type"] ?? null);
    }
  });
  let seen = (await report()).lines.length;

  // The attack: from a page on another site, every kind of simple request.
  const loaded = await page.goto(`${attacker}/`);
  check(loaded.status() === 200, `the attacker's page: ${loaded.status()}`);
  const fetches = [
    "no_cors_blob",
    "no_cors_json_blob",
    "no_cors_json_header",
    "no_cors_text_plain",
    "cors_text_plain",
    "no_cors_form_urlencoded",
    "no_cors_multipart",
    "beacon_text",
  ];
  const refused = [];
  for (const name of fetches) {
    sent.length = 0;
    const page_saw = await sendFromPage(page, name);
    const { line, originRequests } = await nextLogLine(seen);
    seen += 1;
    emit("probe", { name, content_type: sent[0], page_saw, log: line, origin_requests: originRequests });
    check(
      line.method === "POST" && line.path === "/invocations" && line.status === 415,
      `${name}: the gateway answered ${JSON.stringify(line)}`,
    );
    check(line.error === "unsupported_media_type", `${name}: ${JSON.stringify(line)}`);
    check(originRequests === 0, `${name}: the demo agent received ${originRequests} requests`);
    check(!/json/i.test(sent[0] ?? ""), `${name}: Chromium sent Content-Type ${sent[0]}`);
    if (name.startsWith("no_cors")) {
      check(page_saw.type === "opaque" && page_saw.status === 0, `${name}: the page saw ${JSON.stringify(page_saw)}`);
    } else if (name === "cors_text_plain") {
      check(Boolean(page_saw.error), `${name}: the page read the answer: ${JSON.stringify(page_saw)}`);
    } else {
      check(page_saw.beacon === true, `${name}: the beacon was not queued`);
    }
    refused.push(name);
  }
  for (const enctype of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]) {
    const name = `form_${enctype.split("/")[1]}`;
    if ((await page.evaluate(() => location.origin)) !== attacker) {
      await page.goto(`${attacker}/`);
    }
    const posted = await postForm(page, enctype);
    const { line, originRequests } = await nextLogLine(seen);
    seen += 1;
    emit("probe", { name, content_type: posted.contentType, page_saw: posted, log: line, origin_requests: originRequests });
    check(posted.contentType.startsWith(enctype), `${name}: sent as ${posted.contentType}`);
    if (enctype === "text/plain") {
      const parsed = JSON.parse(posted.body);
      check(parsed.prompt === "a cross-site form speaking", `${name}: the body is JSON: ${posted.body}`);
    }
    check(posted.status === 415, `${name}: answered ${posted.status}`);
    check(line.status === 415 && line.error === "unsupported_media_type", `${name}: ${JSON.stringify(line)}`);
    check(originRequests === 0, `${name}: the demo agent received ${originRequests} requests`);
    refused.push(name);
  }
  emit("attack_refused", { probes: refused });

  // The control: the gateway's own page, with a JSON body declared as such.
  const own = await page.goto(`${gateway}/`);
  check(own.status() === 200, `the gateway's page: ${own.status()}`);
  seen = (await report()).lines.length;
  const control = await page.evaluate(async () => {
    const response = await fetch("/invocations", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "/events 3 0 1 same-origin control", response: "transformed" }),
    });
    return { status: response.status, body: await response.text() };
  });
  const controlLine = await nextLogLine(seen);
  seen += 1;
  emit("control", { page_saw: control, log: controlLine.line, origin_requests: controlLine.originRequests });
  check(control.status === 200 && control.body.startsWith("1 2 3\n"), `control: ${JSON.stringify(control)}`);
  check(controlLine.line.status === 200, `control: ${JSON.stringify(controlLine.line)}`);
  check(controlLine.originRequests === 1, `control: ${controlLine.originRequests} origin requests`);

  // Loopback names other than the listener's own address work too.
  const localhost = gateway.replace("127.0.0.1", "localhost");
  const viaLocalhost = await page.goto(`${localhost}/`);
  check(viaLocalhost.status() === 200, `${localhost}/: ${viaLocalhost.status()}`);
  emit("localhost", { status: viaLocalhost.status() });

  // DNS rebinding: evil.test resolves to 127.0.0.1, so the attacker's page,
  // once rebound, is same-origin with whatever listens on the port.
  const rebound = await page.goto(`${reboundGateway}/`);
  check(rebound.status() === 421, `${reboundGateway}/: ${rebound.status()}`);
  const reboundBody = JSON.parse(await rebound.text());
  check(reboundBody.error?.code === "misdirected_request", `${reboundGateway}/: ${JSON.stringify(reboundBody)}`);
  const reboundInvoke = await page.evaluate(async (body) => {
    const response = await fetch("/invocations", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    return { origin: location.origin, status: response.status, body: await response.text() };
  }, BODY);
  check(reboundInvoke.origin === reboundGateway, `the rebound page's origin: ${reboundInvoke.origin}`);
  check(reboundInvoke.status === 421, `rebound POST /invocations: ${JSON.stringify(reboundInvoke)}`);
  check(JSON.parse(reboundInvoke.body).error.code === "misdirected_request", reboundInvoke.body);
  const afterRebinding = await report();
  check(afterRebinding.originRequests === 1, `after rebinding: ${afterRebinding.originRequests} origin requests`);
  emit("rebinding_gateway", { page: rebound.status(), invoke: reboundInvoke.status });

  // The development issuer: no token for a rebound page; one for its own.
  const reboundIssuerPage = await page.goto(`${reboundIssuer}/.well-known/jwks.json`);
  check(reboundIssuerPage.status() === 421, `${reboundIssuer}: ${reboundIssuerPage.status()}`);
  const reboundToken = await page.evaluate(async () => {
    const response = await fetch("/token", { method: "POST" });
    return { status: response.status, body: await response.text() };
  });
  check(reboundToken.status === 421, `rebound POST /token: ${JSON.stringify(reboundToken)}`);
  check(!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(reboundToken.body), `a token for a rebound page: ${reboundToken.body}`);
  const ownIssuerPage = await page.goto(`${issuer}/.well-known/openid-configuration`);
  check(ownIssuerPage.status() === 200, `${issuer}: ${ownIssuerPage.status()}`);
  const token = await page.evaluate(async () => {
    const response = await fetch("/token", { method: "POST" });
    return { status: response.status, body: await response.text() };
  });
  check(token.status === 200 && /^[\w-]+\.[\w-]+\.[\w-]+$/.test(token.body), `control POST /token: ${token.status}`);
  emit("rebinding_issuer", { page: reboundIssuerPage.status(), token: reboundToken.status, control: token.status });
}

runInChromium("cross-site", userDataDir, run, { extraArgs: [`--host-resolver-rules=${hostRules}`] });
