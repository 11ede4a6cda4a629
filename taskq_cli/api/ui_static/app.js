// The taskq dashboard: plain JavaScript served by `taskq api` itself (no CDN, no build step).
// Every value from the server goes into the page as text (textContent / text nodes), never as HTML:
// payloads and errors are written by whoever enqueued the task.
"use strict";

const REFRESH_MS = 2000;
const STATE_ICONS = { pending: "●", scheduled: "◷", waiting: "◔", active: "▶", done: "✓", dead: "✕" };
const session = { auth: false, csrf: null, signedIn: false };
let current = null; // the view on screen: { refresh() } or null
let timer = null;

// -- small helpers ---------------------------------------------------------------------------------

function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function fill(el, ...kids) {
  // replaceChildren that, like h(), leaves out null/false and puts every value in as text
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false)
    .map((k) => (k instanceof Node ? k : document.createTextNode(String(k)))));
}

function fmt(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
}

function when(iso) {
  // "3 min ago" / "in 25 s", with the exact time on hover and for screen readers
  if (!iso) return h("span", { class: "muted" }, "–");
  const t = new Date(iso);
  const seconds = Math.round((t.getTime() - Date.now()) / 1000);
  const a = Math.abs(seconds);
  let text;
  if (a < 2) text = "now";
  else {
    const [n, unit] = a < 90 ? [a, "s"] : a < 5400 ? [Math.round(a / 60), "min"]
      : a < 129600 ? [Math.round(a / 3600), "h"] : [Math.round(a / 86400), "d"];
    text = seconds < 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
  }
  return h("time", { datetime: iso, title: t.toLocaleString() + " (" + iso + ")" }, text);
}

function badge(state) {
  return h("span", { class: "badge s-" + state }, (STATE_ICONS[state] || "•") + " " + state);
}

function link(hash, text, props) {
  return h("a", { href: hash, ...(props || {}) }, text);
}

function taskHash(id, queue) {
  return "#/task/" + encodeURIComponent(id) + (queue ? "?queue=" + encodeURIComponent(queue) : "");
}

function queueHash(name, state) {
  return "#/queue/" + encodeURIComponent(name) + (state ? "?state=" + encodeURIComponent(state) : "");
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? "?" + text : "";
}

function notice(text, bad) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = "notice show" + (bad ? " bad" : "");
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { box.className = "notice"; }, 5000);
}

function ask(text, okText) {
  // the page's own dialog (keyboard: Tab between the buttons, Escape cancels); resolves true or false
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = okText || "Confirm";
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.onclick = null;
      document.getElementById("confirm-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    ok.onclick = () => done(true);
    document.getElementById("confirm-cancel").onclick = () => done(false);
    dialog.onclose = () => done(false);
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

class Refused extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options) {
  const opts = { method: "GET", credentials: "same-origin", headers: {} , ...(options || {}) };
  if (opts.method !== "GET") {
    opts.headers["X-CSRF-Token"] = session.csrf || "";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json || {});
    delete opts.json;
  }
  const response = await fetch("api/" + path, opts);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401 && path !== "login") {
    showLogin();
    throw new Refused(401, "sign in first");
  }
  if (!response.ok) throw new Refused(response.status, (body && body.detail) || response.statusText);
  return body;
}

async function act(path, json, okText) {
  try {
    const answer = await api(path, { method: "POST", json });
    if (okText) notice(typeof okText === "function" ? okText(answer) : okText);
    return answer;
  } catch (e) {
    if (e.status !== 401) notice(e.message, true);
    return null;
  }
}

function table(headers, rows, caption) {
  return h("div", { class: "scroll" },
    h("table", {},
      caption ? h("caption", { class: "sr" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows)));
}

function empty(title, ...what) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title), ...what.map((w) => h("p", {}, w)));
}

function code(text) {
  return h("code", {}, text);
}

function pretty(value) {
  return h("pre", { class: "json" }, value === undefined ? "" : JSON.stringify(value, null, 2));
}

// -- the live strip (every page): totals from the shared overview ---------------------------------------


function renderStrip(data) {
  const strip = document.getElementById("strip");
  if (!data) { fill(strip); return; }
  const t = data.totals;
  fill(strip,
    ...data.states.map((s) => h("span", { class: "chip s-" + s, title: s }, (STATE_ICONS[s] || "") + " " + fmt(t[s]) + " " + s)),
    h("span", { class: "chip" }, "⚙ " + fmt(data.workers) + " workers"),
    h("span", { class: "muted small" }, "updated ", when(data.time)));
}

// -- the overview ---------------------------------------------------------------------------------------

function spark(values, label) {
  // per-minute bars, oldest first; a minute nobody watched is a gap
  const max = Math.max(1, ...values.filter((v) => v !== null));
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", "0 0 50 16");
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  values.forEach((v, i) => {
    if (v === null) return;
    const r = document.createElementNS(svgNs, "rect");
    const height = Math.max(v > 0 ? 2 : 0.5, (v / max) * 16);
    r.setAttribute("x", String(i * 5));
    r.setAttribute("y", String(16 - height));
    r.setAttribute("width", "4");
    r.setAttribute("height", String(height));
    svg.append(r);
  });
  return svg;
}

function lastMinute(series) {
  if (!series) return null;
  const v = series[series.length - 1];
  return v === undefined ? null : v;
}

function limitsText(q) {
  const parts = [];
  if (q.concurrency_limit !== null && q.concurrency_limit !== undefined) parts.push(fmt(q.concurrency_limit) + " at once");
  if (q.rate_limit) parts.push(fmt(q.rate_limit.limit) + " per " + q.rate_limit.window + "s");
  return parts.join(", ");
}

function overviewView() {
  const state = { find: "", offset: 0, limit: 50 };
  const body = h("div", { id: "overview-body" });
  const find = h("input", { type: "search", id: "find-queue", placeholder: "Find a queue", "aria-label": "Find a queue by name" });
  find.addEventListener("input", () => { state.find = find.value; state.offset = 0; refresh(); });
  const root = h("section", { "aria-labelledby": "h-overview" },
    h("div", { class: "head" }, h("h1", { id: "h-overview" }, "Queues"), find), body);

  function row(q, states) {
    const per = q.per_minute || { processed: [], failed: [] };
    const done = lastMinute(per.processed);
    const failed = lastMinute(per.failed);
    return h("tr", { "data-queue": q.name },
      h("th", { scope: "row" }, link(queueHash(q.name), q.name),
        q.paused ? h("span", { class: "badge paused", title: "Workers take nothing from this queue" }, "‖ paused") : null),
      states.map((s) => h("td", { class: "num", "data-state": s },
        q[s] ? link(queueHash(q.name, s), fmt(q[s]), { "aria-label": fmt(q[s]) + " " + s }) : h("span", { class: "muted" }, "0"))),
      h("td", { class: "num" }, done === null ? h("span", { class: "muted", title: "Counted while the dashboard is open" }, "…") : fmt(done),
        spark(per.processed, "processed per minute, last 10 minutes")),
      h("td", { class: "num" + (failed ? " bad-text" : "") }, failed === null ? h("span", { class: "muted" }, "…") : fmt(failed),
        spark(per.failed, "failed per minute, last 10 minutes")),
      h("td", {}, q.oldest_pending_age === null ? "" : ageText(q.oldest_pending_age)),
      h("td", {}, limitsText(q) || h("span", { class: "muted" }, "none")));
  }

  async function refresh() {
    const data = await api("overview" + query({ find: state.find, offset: state.offset, limit: state.limit }));
    renderStrip(data);
    if (!data.matched && !state.find) {
      fill(body, empty("No queues yet.",
        ["Enqueue a task and its queue appears here: ", code("taskq enqueue hello '{\"name\": \"world\"}'")],
        ["Then start a worker: ", code("taskq worker --queues default")]));
      return;
    }
    const rows = data.queues.map((q) => row(q, data.states));
    const headers = ["Queue", ...data.states.map((s) => badge(s)), "Done / min", "Failed / min", "Oldest pending", "Limits"];
    fill(body,
      data.matched ? table(headers, rows, "Every queue: tasks by state, throughput, limits")
        : empty("No queue name contains “" + state.find + "”.", "Clear the search box to see every queue."),
      pager(state, data.matched, refresh, "queues"));
  }
  return { root, refresh, ownsStrip: true };
}

function ageText(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

function pager(state, total, refresh, noun) {
  if (total === null || total === undefined) total = Infinity;
  if (total <= state.limit && state.offset === 0) return null;
  const shownEnd = Math.min(state.offset + state.limit, total);
  return h("nav", { class: "pager", "aria-label": "Pages of " + noun },
    h("button", { type: "button", disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - state.limit); refresh(); } }, "← Previous"),
    h("span", {}, `${fmt(state.offset + 1)}–${fmt(shownEnd)}` + (total === Infinity ? "" : ` of ${fmt(total)}`)),
    h("button", { type: "button", disabled: shownEnd >= total || state.atEnd, onclick: () => { state.offset += state.limit; refresh(); } }, "Next →"));
}

// -- one queue -----------------------------------------------------------------------------------------------

function queueView(name, params) {
  const state = { state: params.get("state") || "pending", name: params.get("name") || "", offset: 0, limit: 50 };
  const head = h("div", { class: "head" });
  const tabs = h("div", { class: "tabs", role: "group", "aria-label": "Task states" });
  const body = h("div", {});
  const findBox = h("input", { type: "search", id: "find-task", value: state.name, placeholder: "Task id or name", "aria-label": "Find a task by id or name" });
  const findForm = h("form", { class: "find", onsubmit: async (e) => {
    e.preventDefault();
    const text = findBox.value.trim();
    if (!text) { state.name = ""; state.offset = 0; refresh(); return; }
    try {
      await api("task" + query({ id: text, queue: name }));
      location.hash = taskHash(text, name);
    } catch (err) {
      if (err.status === 401) return;
      state.name = text; state.offset = 0; refresh(); // not an id: the tasks of that name
    }
  } }, findBox, h("button", { type: "submit" }, "Find"));
  const limitsForm = h("form", { class: "limits" });
  const root = h("section", {}, head, h("div", { class: "bar" }, tabs, findForm), body, h("details", {}, h("summary", {}, "Limits"), limitsForm));

  function renderHead(info) {
    fill(head,
      h("h1", {}, "Queue ", h("span", { class: "mono" }, name), info.paused ? h("span", { class: "badge paused" }, "‖ paused") : null),
      h("div", { class: "actions" },
        info.paused
          ? h("button", { type: "button", onclick: async () => { await act("queue/resume" + query({ name }), {}, "Queue resumed: workers take its tasks again."); refresh(); } }, "▶ Resume")
          : h("button", { type: "button", onclick: async () => { await act("queue/pause" + query({ name }), {}, "Queue paused: workers take nothing from it; it still accepts tasks."); refresh(); } }, "‖ Pause"),
        h("button", { type: "button", class: "danger", onclick: () => clearQueue(info) }, "Clear…")));
    const conc = h("input", { type: "number", min: "1", id: "limit-concurrency", value: info.concurrency_limit ?? "", placeholder: "no limit" });
    const rate = h("input", { type: "text", id: "limit-rate", value: info.rate_limit ? `${info.rate_limit.limit}/${info.rate_limit.window}s` : "", placeholder: "e.g. 100/s", pattern: "\\d+/.+" });
    fill(limitsForm,
      h("label", {}, "At most this many active ", conc),
      h("label", {}, "Rate (starts per window) ", rate),
      h("button", { type: "submit" }, "Save limits"),
      h("p", { class: "muted small" }, "Empty means no limit. Enforced by every worker at fetch."));
    limitsForm.onsubmit = async (e) => {
      e.preventDefault();
      await act("queue/limits" + query({ name }), { concurrency: conc.value ? Number(conc.value) : null, rate: rate.value.trim() || null }, "Limits saved.");
      refresh();
    };
  }

  async function clearQueue(info) {
    const fresh = await api("queue" + query({ name }));
    const ok = await ask(`Delete ${fmt(fresh.clear_count)} tasks of queue “${name}” (pending, scheduled, dead and done)? Active tasks finish. This cannot be undone.`, "Delete " + fmt(fresh.clear_count) + " tasks");
    if (ok) await act("queue/clear" + query({ name }), {}, (a) => `Deleted ${fmt(a.cleared)} tasks.`);
    refresh();
  }

  async function refresh() {
    const info = await api("queue" + query({ name }));
    if (!head.childElementCount || head.dataset.paused !== String(info.paused)) { renderHead(info); head.dataset.paused = String(info.paused); }
    const page = await api("tasks" + query({ queue: name, state: state.state, name: state.name, offset: state.offset, limit: state.limit }));
    fill(tabs, ...page.states.map((s) => h("a", {
      href: queueHash(name, s), class: "tab" + (s === state.state ? " on" : ""), "aria-current": s === state.state ? "page" : null,
    }, (STATE_ICONS[s] || "") + " " + s + (info[s] !== undefined ? " " + fmt(info[s]) : ""))));
    state.atEnd = page.items.length < state.limit;
    const rows = page.items.map((t) => h("tr", {},
      h("td", { class: "mono" }, link(taskHash(t.id, t.queue), t.id)),
      h("td", {}, t.name),
      h("td", { class: "num" }, fmt(t.attempts)),
      h("td", {}, when(t.enqueued_at)),
      h("td", {}, when(t.run_at || t.started_at || t.finished_at || t.died_at)),
      h("td", { class: "err" }, t.last_error ? t.last_error.type + ": " + t.last_error.message : "")));
    const what = state.name ? `No ${state.state} task named “${state.name}” in this queue.` : `No ${state.state} tasks in this queue.`;
    fill(body,
      state.name ? h("p", {}, "Tasks named ", code(state.name), " ", h("button", { type: "button", class: "quiet", onclick: () => { state.name = ""; findBox.value = ""; refresh(); } }, "show all")) : null,
      rows.length ? table(["Id", "Name", "Attempts", "Enqueued", "Due / started / ended", "Last error"], rows, `Tasks ${state.state}`)
        : empty(what, state.state === "pending" ? "Enqueue one with taskq enqueue NAME --queue " + name + ", or look at another state." : "Look at another state above."),
      pager(state, page.total, refresh, "tasks"));
  }
  return { root, refresh };
}

// -- one task ---------------------------------------------------------------------------------------------

const TIME_FIELDS = new Set(["enqueued_at", "run_at", "started_at", "finished_at", "died_at", "lease_deadline"]);
const BLOCK_FIELDS = new Set(["payload", "result", "last_error", "options_source", "raw"]);
const LINK_FIELDS = new Set(["after", "blocked_by", "dependencies", "dependents"]);

function taskView(id, params) {
  const queue = params.get("queue") || "";
  const root = h("section", {});

  function value(key, v, task) {
    if (TIME_FIELDS.has(key)) return when(v);
    if (key === "state") return badge(v);
    if (key === "queue") return link(queueHash(v), v);
    if (LINK_FIELDS.has(key) && Array.isArray(v)) {
      if (!v.length) return h("span", { class: "muted" }, "none");
      return h("ul", { class: "deps" }, v.map((d) => {
        const depId = typeof d === "string" ? d : d.id;
        const depQueue = typeof d === "string" ? "" : d.queue;
        return h("li", {}, link(taskHash(depId, depQueue), depId), typeof d === "object" && d.state ? [" ", badge(d.state)] : null);
      }));
    }
    if (v === null || v === undefined) return h("span", { class: "muted" }, "–");
    if (typeof v === "object") return pretty(v);
    return String(v);
  }

  async function refresh() {
    let task;
    try {
      task = await api("task" + query({ id, queue }));
    } catch (e) {
      if (e.status === 404) { fill(root, empty("No task " + id + ".", "It may have finished and expired (done tasks are kept for result_ttl), or been purged.", link("#/", "Back to the overview"))); return; }
      throw e;
    }
    const actions = [];
    if (task.state === "dead" && !task.raw) actions.push(h("button", { type: "button", onclick: async () => { if (await act("task/retry" + query({ id: task.id, queue: task.queue }), {}, "Sent back to pending; attempts reset.")) refresh(); } }, "↻ Retry"));
    if (task.state === "scheduled") actions.push(h("button", { type: "button", onclick: async () => { if (await act("task/run" + query({ id: task.id, queue: task.queue }), {}, "Moved to pending: it runs next.")) refresh(); } }, "▶ Run now"));
    if (["pending", "scheduled", "waiting", "active"].includes(task.state)) actions.push(h("button", { type: "button", class: "danger", onclick: async () => {
      if (await ask(`Cancel task ${task.id} (${task.state})?` + (task.state === "active" ? " Its worker stops it at its next lease renewal." : ""), "Cancel the task")) {
        if (await act("task/cancel" + query({ id: task.id, queue: task.queue }), {}, "Cancelled.")) refresh();
      } } }, "✕ Cancel…"));
    const fields = Object.entries(task).filter(([k]) => !BLOCK_FIELDS.has(k));
    const error = task.last_error;
    fill(root,
      h("div", { class: "head" }, h("h1", {}, "Task ", h("span", { class: "mono" }, task.id)), h("div", { class: "actions" }, actions)),
      h("dl", { class: "fields" }, fields.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, value(k, v, task))])),
      error ? h("section", { class: "error-box" }, h("h2", {}, "Last error"),
        h("p", { class: "err", id: "error-message" }, h("strong", {}, error.type), ": ", error.message),
        error.traceback ? h("details", { open: true }, h("summary", {}, "Traceback"), h("pre", { id: "traceback" }, error.traceback)) : null) : null,
      h("h2", {}, "Payload"), task.payload_truncated ? h("p", { class: "muted" }, "Too large to show here.") : h("div", { id: "payload" }, pretty(task.payload)),
      task.raw ? [h("h2", {}, "Raw message (malformed)"), h("pre", {}, task.raw)] : null,
      task.state === "done" ? [h("h2", {}, "Result"), pretty(task.result)] : null,
      task.options_source ? h("p", { class: "muted small" }, "max_retries from " + (task.options_source.max_retries || "?") + ", timeout from " + (task.options_source.timeout || "?")) : null);
  }
  return { root, refresh };
}

// -- the dead-letter queue ----------------------------------------------------------------------------------

function dlqView(params) {
  const filters = { queue: params.get("queue") || "", name: params.get("name") || "", text: params.get("text") || "", min_age: params.get("min_age") || "", max_age: params.get("max_age") || "" };
  const cursors = [null]; // the cursor of each page shown so far: Newer goes back one
  const chosen = new Map(); // id -> queue, the ticked tasks
  const input = (key, label, props) => h("label", {}, label, h("input", { id: "dlq-" + key.replace("_", "-"), name: key, value: filters[key], ...props }));
  const form = h("form", { class: "filters", role: "search" },
    input("queue", "Queue", { type: "text", placeholder: "any" }),
    input("name", "Task name", { type: "text", placeholder: "any" }),
    input("text", "Error contains", { type: "search", placeholder: "e.g. Timeout" }),
    input("min_age", "Dead at least", { type: "text", placeholder: "e.g. 1h", size: "6" }),
    input("max_age", "Dead at most", { type: "text", placeholder: "e.g. 7d", size: "6" }),
    h("button", { type: "submit" }, "Filter"));
  form.onsubmit = (e) => {
    e.preventDefault();
    for (const key of Object.keys(filters)) filters[key] = form.elements[key].value.trim();
    location.hash = "#/dlq" + query(filters); // the filters stay in the address: a link to share
  };
  const summary = h("p", { id: "dlq-summary", "aria-live": "polite" });
  const body = h("div", {});
  const bulk = h("div", { class: "actions bulk" },
    h("button", { type: "button", id: "retry-selected", onclick: () => bulkAct("retry", true) }, "↻ Retry selected"),
    h("button", { type: "button", id: "purge-selected", class: "danger", onclick: () => bulkAct("purge", true) }, "Purge selected…"),
    h("button", { type: "button", id: "retry-all", onclick: () => bulkAct("retry", false) }, "↻ Retry all matching…"),
    h("button", { type: "button", id: "purge-all", class: "danger", onclick: () => bulkAct("purge", false) }, "Purge all matching…"));
  const root = h("section", {}, h("div", { class: "head" }, h("h1", {}, "Dead letters"), h("button", { type: "button", class: "quiet", onclick: () => refresh() }, "⟳ Refresh")), form, summary, bulk, body);
  let page = null;

  function filterBody() {
    const out = {};
    for (const [k, v] of Object.entries(filters)) if (v) out[k] = v;
    return out;
  }

  async function bulkAct(action, selected) {
    if (selected && !chosen.size) { notice("Tick the tasks first (or use “all matching”).", true); return; }
    const plan = await act("dlq/plan", selected ? { items: [...chosen].map(([id, q]) => [q, id]) } : { filter: filterBody() });
    if (!plan) return;
    if (!plan.count) { notice("No dead task matches."); return; }
    const more = plan.capped ? " (the newest ones; more match: run it again afterwards)" : "";
    const what = action === "purge" ? `Delete ${fmt(plan.count)} dead tasks for good${more}? This cannot be undone.`
      : `Retry ${fmt(plan.count)} dead tasks${more}? They go back to pending with their attempts reset.`;
    if (!(await ask(what, (action === "purge" ? "Purge " : "Retry ") + fmt(plan.count)))) return;
    const done = await act("dlq/" + action, { plan: plan.plan }, (a) => `${action === "purge" ? "Purged" : "Retried"} ${fmt(a.handled)} tasks` + (a.missing.length ? `; ${fmt(a.missing.length)} were no longer dead` : "") + (a.refused.length ? `; ${fmt(a.refused.length)} malformed ones cannot be retried` : "") + ".");
    if (done) { chosen.clear(); cursors.length = 1; refresh(); }
  }

  function describe() {
    if (page.total !== null) return `${fmt(page.total)} dead task${page.total === 1 ? "" : "s"} match.`;
    const found = page.items.length;
    return page.capped ? `${fmt(found)} match among the ${fmt(page.scanned)} newest dead tasks read so far (reading stops at a bound: use Older to read on).`
      : `${fmt(found)} match${found === 1 ? "es" : ""} on this page (${fmt(page.scanned)} dead tasks read).`;
  }

  async function refresh() {
    const cursor = cursors[cursors.length - 1];
    try {
      page = await api("dlq" + query({ ...filterBody(), cursor: cursor ? JSON.stringify(cursor) : null, limit: 50 }));
    } catch (e) {
      if (e.status !== 401) { summary.textContent = e.message; fill(body); }
      return;
    }
    summary.textContent = describe();
    const all = h("input", { type: "checkbox", id: "select-page", "aria-label": "Select every task on this page" });
    all.onchange = () => { for (const t of page.items) all.checked ? chosen.set(t.id, t.queue) : chosen.delete(t.id); refresh(); };
    all.checked = page.items.length > 0 && page.items.every((t) => chosen.has(t.id));
    const rows = page.items.map((t) => {
      const box = h("input", { type: "checkbox", "aria-label": "Select " + t.id, checked: chosen.has(t.id) });
      box.onchange = () => { box.checked ? chosen.set(t.id, t.queue) : chosen.delete(t.id); };
      return h("tr", { "data-id": t.id },
        h("td", {}, box),
        h("td", { class: "mono" }, link(taskHash(t.id, t.queue), t.id.length > 14 ? t.id.slice(0, 12) + "…" : t.id, { title: t.id })),
        h("td", {}, t.name), h("td", {}, link(queueHash(t.queue), t.queue)), h("td", {}, when(t.died_at)),
        h("td", { class: "num" }, fmt(t.attempts)),
        h("td", { class: "err" }, t.last_error ? t.last_error.type + ": " + t.last_error.message : t.raw ? "malformed message" : ""));
    });
    const any = Object.values(filters).some((v) => v);
    fill(body,
      rows.length ? table([all, "Id", "Name", "Queue", "Died", "Attempts", "Error"], rows, "Dead tasks, newest first")
        : empty(any ? "No dead task matches these filters." : "The dead-letter queue is empty.",
          any ? "Loosen a filter, or clear them all." : "Tasks land here when their retries are spent, or after Fail(...). Nothing to do."),
      h("nav", { class: "pager", "aria-label": "Pages of dead tasks" },
        h("button", { type: "button", disabled: cursors.length === 1, onclick: () => { cursors.pop(); refresh(); } }, "← Newer"),
        h("span", {}, "page " + cursors.length),
        h("button", { type: "button", id: "older", disabled: !page.next, onclick: () => { cursors.push(page.next); refresh(); } }, "Older →")));
  }
  return { root, refresh, manual: true };
}

// -- workers and schedules ----------------------------------------------------------------------------------

function workersView() {
  const body = h("div", {});
  const root = h("section", {}, h("div", { class: "head" }, h("h1", {}, "Workers")), body);
  async function refresh() {
    const workers = await api("workers");
    if (!workers.length) {
      fill(body, empty("No worker is running.", ["Start one: ", code("taskq worker --queues default")], "Workers appear here within a heartbeat of starting."));
      return;
    }
    fill(body, ...workers.map((w) => h("article", { class: "card", "data-worker": w.id },
      h("h2", { class: "mono" }, w.id),
      h("p", {}, h("span", { class: "badge " + (w.state === "busy" ? "s-active" : "idle") }, w.state === "busy" ? "▶ busy" : "◌ " + (w.state || "idle")),
        " ", `${w.host || "?"} pid ${w.pid ?? "?"} · ${w.pool || "pool ?"} · ${fmt(w.concurrency)} slots · queues `, w.queues.map((q, i) => [i ? ", " : "", link(queueHash(q), q)]),
        " · started ", when(w.started_at), " · heartbeat ", when(w.heartbeat_at)),
      w.active.length ? table(["Task", "Name", "Queue", "Running since", "Lease deadline"], w.active.map((a) => h("tr", {},
        h("td", { class: "mono" }, link(taskHash(a.id, a.queue), a.id)), h("td", {}, a.name || "?"), h("td", {}, a.queue),
        h("td", {}, when(a.started_at)), h("td", { "data-field": "lease_deadline" }, a.lease_deadline ? when(a.lease_deadline) : h("span", { class: "muted" }, "ended")))), "Tasks this worker runs")
        : h("p", { class: "muted" }, "Idle: no task right now."))));
  }
  return { root, refresh };
}

function schedulesView() {
  const body = h("div", {});
  const root = h("section", {}, h("div", { class: "head" }, h("h1", {}, "Schedules")), body);
  async function refresh() {
    const rows = await api("schedules");
    if (!rows.length) {
      fill(body, empty("No periodic schedules.", ["Add one: ", code("taskq cron add nightly '0 3 * * *' report")], "or declare @tq.periodic(...) in your app."));
      return;
    }
    fill(body, table(["Name", "Schedule", "Task", "Queue", "Next run", "Last run", "Last task", ""], rows.map((s) => h("tr", { "data-schedule": s.name },
      h("th", { scope: "row" }, s.name, s.paused ? h("span", { class: "badge paused" }, "‖ paused") : null),
      h("td", { class: "mono" }, s.schedule + (s.tz !== "UTC" ? " " + s.tz : "")), h("td", {}, s.task), h("td", {}, link(queueHash(s.queue), s.queue)),
      h("td", {}, s.paused ? h("span", { class: "muted" }, "paused") : when(s.next_run)), h("td", {}, when(s.last_run)),
      h("td", {}, s.last_task_id ? [link(taskHash(s.last_task_id, s.queue), s.last_task_state || "?")] : ""),
      h("td", {}, h("button", { type: "button", onclick: async () => {
        await act("schedule/" + (s.paused ? "resume" : "pause") + query({ name: s.name }), {}, s.paused ? "Schedule resumed." : "Schedule paused: no new runs until resumed.");
        refresh();
      } }, s.paused ? "▶ Resume" : "‖ Pause")))), "Periodic schedules"));
  }
  return { root, refresh };
}

// -- sign-in, routing, the refresh loop ------------------------------------------------------------------------

function showLogin() {
  clearTimeout(timer);
  current = null;
  renderStrip(null);
  document.getElementById("signout").hidden = true;
  const token = h("input", { type: "password", id: "token", autocomplete: "current-password", required: true });
  const why = h("p", { class: "bad-text", role: "alert" });
  const form = h("form", { class: "login" },
    h("h1", {}, "Sign in"),
    h("p", {}, "This taskq API has a token. Enter it once: the browser keeps a session cookie that scripts cannot read."),
    h("label", {}, "API token ", token), h("button", { type: "submit" }, "Sign in"), why);
  form.onsubmit = async (e) => {
    e.preventDefault();
    try {
      const answer = await api("login", { method: "POST", json: { token: token.value } });
      Object.assign(session, { auth: answer.auth, csrf: answer.csrf, signedIn: true });
      route();
    } catch (err) {
      why.textContent = err.status === 401 ? "That is not the API token." : err.message;
      token.select();
    }
  };
  fill(document.getElementById("main"), form);
  token.focus();
}

function route() {
  clearTimeout(timer);
  const [path, search] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  let view;
  let page = parts[0] || "overview";
  if (page === "queue" && parts[1]) view = queueView(parts[1], params);
  else if (page === "task" && parts[1]) view = taskView(parts.slice(1).join("/"), params);
  else if (page === "dlq") view = dlqView(params);
  else if (page === "workers") view = workersView();
  else if (page === "schedules") view = schedulesView();
  else { page = "overview"; view = overviewView(); }
  for (const a of document.querySelectorAll("nav a[data-page]")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  current = view;
  fill(document.getElementById("main"), view.root);
  document.getElementById("signout").hidden = !session.auth;
  tick(true);
}

async function tick(first) {
  clearTimeout(timer);
  const view = current;
  if (!view) return;
  try {
    if (first || !view.manual) await view.refresh();
    if (!view.ownsStrip) renderStrip(await api("overview" + query({ limit: 1 })));
    document.body.classList.remove("offline");
  } catch (e) {
    if (e.status === 401) return; // the sign-in form is up
    document.body.classList.add("offline");
    notice("Cannot reach the server: " + e.message + " (retrying)", true);
  }
  if (view === current) timer = setTimeout(() => tick(false), document.hidden ? REFRESH_MS * 5 : REFRESH_MS);
}

async function start() {
  document.getElementById("signout").onclick = async () => {
    await act("logout", {});
    Object.assign(session, { csrf: null, signedIn: false });
    showLogin();
  };
  document.addEventListener("keydown", (e) => {
    // "/" jumps to the page's search box, as on most sites
    if (e.key === "/" && !["INPUT", "TEXTAREA"].includes(document.activeElement.tagName)) {
      const box = document.querySelector("main input[type=search]");
      if (box) { e.preventDefault(); box.focus(); }
    }
  });
  window.addEventListener("hashchange", () => { if (current || session.signedIn) route(); });
  try {
    const answer = await api("session");
    Object.assign(session, { auth: answer.auth, csrf: answer.csrf });
    session.signedIn = answer.signed_in;
    if (!answer.signed_in) { showLogin(); return; }
  } catch (e) {
    if (e.status !== 401) fill(document.getElementById("main"), empty("Cannot reach the taskq API.", e.message));
    return;
  }
  route();
}

document.addEventListener("DOMContentLoaded", start);
