// The chat page: sends prompts to this gateway's own /invocations and shows
// the answer as it streams. Transformed mode by default (plain text, then a
// trailer after the last "\n----------\n" with usage and the session id);
// the "raw events" toggle asks for original mode and shows the SSE as is.
// With a token budget (TOKEN_BUDGET), a line above the message box tells the
// tokens left, from GET /usage after each answer. When the caller may use
// more than one agent (GET /agents), a picker chooses which; "New
// conversation" (and choosing another agent) ends the session with DELETE.
"use strict";

const SEPARATOR = "\n----------\n";
const TOKEN_KEY = "agent-edge-token";
const SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id";

const page = document.documentElement.dataset;
const auth = page.auth;
const devTokenUrl = page.devTokenUrl || "";

const $ = (id) => document.getElementById(id);
const conversation = $("conversation");
const notice = $("notice");
const composer = $("composer");
const prompt = $("prompt");
const sendButton = $("send");
const stopButton = $("stop");
const raw = $("raw");
const budget = $("budget");
const agentChoice = $("agent-choice");
const agentPicker = $("agent");

let sessionId = null;
// The agent the session belongs to: null is the default's (/invocations).
let sessionAgent = null;
let controller = null;

// --- sign-in ------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function authorization() {
  return auth === "jwt" && token() ? { Authorization: `Bearer ${token()}` } : {};
}

function setToken(value) {
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
  showSignInState();
  refreshBudget();
  loadAgents();
}

function showSignInState(message) {
  const signedIn = Boolean(token());
  $("sign-in-state").textContent =
    message || (signedIn ? "Signed in (token kept in this tab)." : "Not signed in.");
  $("sign-out").hidden = !signedIn;
  $("token-form").hidden = signedIn;
}

function setUpSignIn() {
  if (auth !== "jwt") {
    return;
  }
  $("sign-in").hidden = false;
  showSignInState();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const field = $("token");
    setToken(field.value.trim());
    field.value = "";
    hideNotice();
    prompt.focus();
  });
  $("sign-out").addEventListener("click", () => setToken(""));
  if (devTokenUrl) {
    const button = $("dev-token");
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        // The development issuer of `agent-edge dev`; it gets no token.
        const response = await fetch(devTokenUrl, { method: "POST", credentials: "omit" });
        if (!response.ok) {
          throw new Error(`the issuer answered ${response.status}`);
        }
        setToken((await response.text()).trim());
        hideNotice();
        prompt.focus();
      } catch (error) {
        showSignInState(`Could not get a development token: ${error.message}`);
      }
    });
  }
}

// --- token budget ------------------------------------------------------------

// "00:00 UTC": UTC, so that it reads the same as the gateway's windows; the
// date only when the reset is more than a day away, the seconds only when
// the window does not end on a whole minute.
function resetTime(date) {
  const iso = date.toISOString();
  const time = iso.slice(11, iso.slice(17, 19) === "00" ? 16 : 19);
  return date - Date.now() > 86400000 ? `${iso.slice(0, 10)} ${time} UTC` : `${time} UTC`;
}

// The `tokens` member of GET /usage, or null: no token limit configured, not
// signed in, or no usable answer.
async function usageTokens() {
  if (auth === "jwt" && !token()) {
    return null;
  }
  try {
    const response = await fetch("/usage", { headers: authorization(), cache: "no-store" });
    const tokens = response.ok ? (await response.json()).tokens : null;
    const usable =
      tokens &&
      Number.isFinite(tokens.remaining) &&
      Number.isFinite(tokens.limit) &&
      !Number.isNaN(Date.parse(tokens.resetsAt));
    return usable ? tokens : null;
  } catch (_) {
    return null; // Unreachable, or not JSON.
  }
}

// Shows the tokens left, or no line at all rather than a stale count.
// Returns the `tokens` member, or null.
let budgetCheck = 0;
async function refreshBudget() {
  const check = ++budgetCheck;
  const tokens = await usageTokens();
  // An older check that answered late must not overwrite a newer one.
  if (check === budgetCheck) {
    const until = tokens && resetTime(new Date(tokens.resetsAt));
    budget.textContent = !tokens
      ? ""
      : tokens.remaining > 0
        ? `${tokens.remaining.toLocaleString()} of ${tokens.limit.toLocaleString()} tokens left until ${until}`
        : `Token budget spent until ${until}.`;
    budget.hidden = !tokens;
  }
  return tokens;
}

// --- agents and sessions ----------------------------------------------------

// The agent chosen in the picker, or null for the default one.
function chosenAgent() {
  const option = agentChoice.hidden ? null : agentPicker.selectedOptions[0];
  return option && option.dataset.default !== "true" ? option.value : null;
}

function agentPath(agent, rest) {
  return agent ? `/agents/${encodeURIComponent(agent)}${rest}` : rest;
}

// Offers the caller's agents (GET /agents) when there is more than one.
let agentsCheck = 0;
async function loadAgents() {
  const check = ++agentsCheck;
  let agents = [];
  if (auth !== "jwt" || token()) {
    try {
      const response = await fetch("/agents", { headers: authorization(), cache: "no-store" });
      agents = response.ok ? (await response.json()).agents || [] : [];
    } catch (_) {
      agents = []; // Unreachable, or not JSON: no picker.
    }
  }
  if (check !== agentsCheck) {
    return;
  }
  const kept = agentPicker.value;
  agentPicker.replaceChildren(
    ...agents
      .filter((agent) => agent && typeof agent.name === "string")
      .map((agent) => {
        const option = document.createElement("option");
        option.value = agent.name;
        option.textContent = agent.description ? `${agent.name}: ${agent.description}` : agent.name;
        option.dataset.default = String(agent.default === true);
        option.selected = agent.name === kept || (!kept && agent.default === true);
        return option;
      }),
  );
  agentChoice.hidden = agentPicker.options.length < 2;
}

// Ends the session with its agent (StopRuntimeSession through the gateway),
// so that the agent stops keeping it. Marks the conversation with the
// outcome (`data-ended`: the id, `data-end-status`: the answer's status).
async function endSession(id, agent) {
  let status = "failed";
  try {
    const response = await fetch(agentPath(agent, `/sessions/${encodeURIComponent(id)}`), {
      method: "DELETE",
      headers: authorization(),
      cache: "no-store",
    });
    status = String(response.status);
  } catch (_) {
    // The session ends by itself when the agent's idle timeout passes.
  }
  conversation.dataset.ended = id;
  conversation.dataset.endStatus = status;
}

function newConversation() {
  if (controller) {
    controller.abort();
  }
  if (sessionId) {
    endSession(sessionId, sessionAgent);
  }
  sessionId = null;
  sessionAgent = null;
  conversation.replaceChildren();
  hideNotice();
  prompt.focus();
}

// --- conversation ----------------------------------------------------------

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = false;
}

function hideNotice() {
  notice.hidden = true;
  notice.textContent = "";
}

function addTurn(who, label) {
  const item = document.createElement("li");
  item.className = who;
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = label;
  item.append(name);
  conversation.append(item);
  return item;
}

function addUserTurn(text) {
  const item = addTurn("user", "You");
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(body);
  following = true;
}

function addAgentTurn(rawMode) {
  const item = addTurn("agent", rawMode ? "Agent (raw events)" : "Agent");
  item.dataset.state = "streaming";
  const body = document.createElement(rawMode ? "pre" : "p");
  body.className = "text";
  const status = document.createElement("p");
  status.className = "status";
  status.textContent = "Answering…";
  item.append(body, status);
  scrollToEnd();
  return { item, body, status };
}

// Follows the answer as it grows, unless the reader scrolled up.
let following = true;
const scroller = document.querySelector("main");
scroller.addEventListener("scroll", () => {
  following = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
});

function scrollToEnd() {
  if (following) {
    scroller.scrollTop = scroller.scrollHeight;
  }
}

function addErrorLine(turn, text) {
  const line = document.createElement("p");
  line.className = "error";
  line.setAttribute("role", "alert");
  line.textContent = text;
  turn.item.insertBefore(line, turn.status);
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
  raw.disabled = busy;
}

// What of a transformed body so far is answer text: the trailer (after the
// last separator, JSON lines) and a possible start of a separator are held
// back until the stream tells what they are.
function visibleText(body) {
  const at = body.lastIndexOf(SEPARATOR);
  if (at >= 0) {
    const after = body.slice(at + SEPARATOR.length);
    if (after === "" || after.startsWith("{")) {
      return body.slice(0, at);
    }
  }
  for (let keep = Math.min(SEPARATOR.length - 1, body.length); keep > 0; keep--) {
    if (SEPARATOR.startsWith(body.slice(body.length - keep))) {
      return body.slice(0, body.length - keep);
    }
  }
  return body;
}

// The finished transformed body: its text and the parsed trailer lines.
function splitTrailer(body) {
  const at = body.lastIndexOf(SEPARATOR);
  if (at < 0) {
    return { text: body, lines: [] };
  }
  try {
    const lines = body
      .slice(at + SEPARATOR.length)
      .split("\n")
      .map((line) => JSON.parse(line));
    if (lines.every((line) => line && typeof line === "object")) {
      return { text: body.slice(0, at), lines };
    }
  } catch (_) {
    // Not a trailer: the separator was part of the answer.
  }
  return { text: body, lines: [] };
}

function describeUsage(usage) {
  const count = (name) => (typeof usage[name] === "number" ? usage[name] : "?");
  return `Tokens: input ${count("inputTokens")}, output ${count("outputTokens")}, total ${count("totalTokens")}`;
}

function finishTransformed(turn, body) {
  const { text, lines } = splitTrailer(body);
  turn.body.textContent = text;
  const status = [];
  for (const line of lines) {
    if (line.error) {
      addErrorLine(turn, `Error: ${line.error.message || line.error.code || "the answer failed"}`);
      turn.item.dataset.state = "failed";
    } else if (typeof line.runtimeSessionId === "string") {
      sessionId = line.runtimeSessionId;
    } else if (line.usage && typeof line.usage === "object") {
      status.push(describeUsage(line.usage));
    }
  }
  if (sessionId) {
    status.push(`Session ${sessionId}`);
    turn.item.dataset.session = sessionId;
  }
  turn.status.textContent = status.join(" · ") || "Done.";
}

// Original mode: the SSE as it came, and any `event: error` as an error line.
function finishRaw(turn, body) {
  for (const block of body.split(/\r?\n\r?\n/)) {
    const lines = block.split(/\r?\n/);
    if (!lines.includes("event: error")) {
      continue;
    }
    const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
    try {
      const error = JSON.parse(data).error || {};
      addErrorLine(turn, `Error: ${error.message || error.code || "the answer failed"}`);
    } catch (_) {
      addErrorLine(turn, "Error: the answer failed");
    }
    turn.item.dataset.state = "failed";
  }
  const status = [];
  if (sessionId) {
    status.push(`Session ${sessionId}`);
    turn.item.dataset.session = sessionId;
  }
  turn.status.textContent = status.join(" · ") || "Done.";
}

async function explainFailure(response) {
  let message = `The gateway answered ${response.status}.`;
  let code = "";
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code;
    }
  } catch (_) {
    // Not our JSON error: keep the status.
  }
  const wait = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  if (response.status === 401) {
    if (auth === "jwt") {
      setToken("");
      $("token").focus();
    }
    return "Not signed in, or the sign-in expired: sign in again.";
  }
  if (response.status === 429 && code === "token_budget_exhausted") {
    // /usage has the window's exact end; Retry-After, whole seconds, is the
    // fallback.
    const tokens = await refreshBudget();
    const reset =
      tokens && tokens.remaining === 0
        ? new Date(tokens.resetsAt)
        : Number.isFinite(wait) && new Date((Math.floor(Date.now() / 1000) + wait) * 1000);
    return reset
      ? `The token budget is spent: it resets at ${resetTime(reset)}.`
      : "The token budget is spent: retry later.";
  }
  if (response.status === 429) {
    return Number.isFinite(wait)
      ? `Too many requests: retry in ${wait} s.`
      : "Too many requests: retry in a moment.";
  }
  return message;
}

async function send(text) {
  hideNotice();
  const rawMode = raw.checked;
  addUserTurn(text);
  const turn = addAgentTurn(rawMode);
  controller = new AbortController();
  setBusy(true);
  const headers = {
    "Content-Type": "application/json",
    Accept: rawMode ? "text/event-stream" : "text/plain",
    ...authorization(),
  };
  const request = { prompt: text, response: rawMode ? "original" : "transformed" };
  if (sessionId) {
    request.runtimeSessionId = sessionId;
  }
  const agent = chosenAgent();
  sessionAgent = agent;
  let body = "";
  let answered = false;
  try {
    const response = await fetch(agentPath(agent, "/invocations"), {
      method: "POST",
      headers,
      body: JSON.stringify(request),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      const why = await explainFailure(response);
      turn.item.dataset.state = "failed";
      turn.status.textContent = "";
      addErrorLine(turn, why);
      showNotice(why);
      return;
    }
    answered = true;
    if (rawMode) {
      sessionId = response.headers.get(SESSION_HEADER) || sessionId;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      body += decoder.decode(value, { stream: true });
      turn.body.textContent = rawMode ? body : visibleText(body);
      scrollToEnd();
    }
    body += decoder.decode();
    if (rawMode) {
      turn.body.textContent = body;
      finishRaw(turn, body);
    } else {
      finishTransformed(turn, body);
    }
    if (turn.item.dataset.state === "streaming") {
      turn.item.dataset.state = "done";
    }
    scrollToEnd();
  } catch (error) {
    if (error.name === "AbortError") {
      turn.item.dataset.state = "stopped";
      turn.status.textContent = "Stopped.";
    } else {
      turn.item.dataset.state = "failed";
      turn.status.textContent = "";
      addErrorLine(turn, `The connection failed: ${error.message}`);
    }
  } finally {
    controller = null;
    setBusy(false);
    // The gateway charges an answer before its body ends, so /usage now
    // counts it (a stopped one, as soon as the gateway saw the client leave).
    if (answered) {
      refreshBudget();
    }
  }
}

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = prompt.value.trim();
  if (!text || controller) {
    return;
  }
  prompt.value = "";
  send(text);
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    composer.requestSubmit();
  }
});

stopButton.addEventListener("click", () => {
  if (controller) {
    controller.abort();
  }
});

$("new-conversation").addEventListener("click", newConversation);
// A session belongs to one agent: another agent, another conversation.
agentPicker.addEventListener("change", newConversation);

setUpSignIn();
refreshBudget();
loadAgents();
prompt.focus();
