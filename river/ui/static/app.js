// river-queue dashboard: hand-written, no dependencies, no build step.
//
// Safety rule of this file: data from the server (job args, errors, kinds, queue names...) only
// ever reaches the page as text (textContent, text nodes, attribute values set one by one).
// No innerHTML, no insertAdjacentHTML, no document.write, no eval. The Content-Security-Policy
// of the server forbids inline scripts and styles as a second line of defence.
"use strict";

(() => {
  const meta = (name) => {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute("content") || "" : "";
  };
  const BASE = meta("river-base");
  const CSRF = meta("river-csrf");
  const READ_ONLY = meta("river-read-only") === "true";
  const TITLE = meta("river-title") || "River";
  const STATES = ["pending", "scheduled", "available", "running", "retryable", "completed", "cancelled", "discarded"];
  const FINALIZED = new Set(["completed", "cancelled", "discarded"]);
  const WAITING = new Set(["pending", "scheduled", "available", "retryable"]);
  const main = document.getElementById("main");

  // --- DOM building ----------------------------------------------------------------------

  function setAttrs(el, attrs) {
    if (!attrs) return el;
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else if (key === "checked" || key === "value" || key === "disabled" || key === "selected") {
        el[key] = value;
      } else {
        el.setAttribute(key, value === true ? "" : String(value));
      }
    }
    return el;
  }

  function fill(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function h(tag, attrs, ...children) {
    return fill(setAttrs(document.createElement(tag), attrs), children);
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    return fill(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  const link = (path, attrs, ...children) => h("a", { ...attrs, href: BASE + path }, ...children);
  const panel = (title, ...children) => h("section", { class: "panel" }, title ? h("h2", null, title) : null, ...children);
  const loading = () => h("p", { class: "muted" }, "Loading…");
  const badge = (state) => h("span", { class: `badge state-${state}` }, state);
  const jobPath = (id) => `/jobs/${encodeURIComponent(String(id))}`;
  // A name made of dots only ("." or "..") cannot be a path segment: the browser would resolve
  // it (even percent-encoded) before any request. Such a queue is addressed by ?name= instead.
  const dotsOnly = (name) => /^\.+$/.test(name);
  const queuePath = (name) => (dotsOnly(name) ? `/queues?name=${encodeURIComponent(name)}` : `/queues/${encodeURIComponent(name)}`);
  // The JSON API of one queue, by ?name= (whatever the name holds).
  const queueApi = (name, action) => `/queue${action ? "/" + action : ""}?name=${encodeURIComponent(name)}`;
  const jobsPath = (params) => {
    const text = new URLSearchParams(params).toString();
    return "/jobs" + (text ? "?" + text : "");
  };

  // --- formatting ------------------------------------------------------------------------

  let skew = 0; // database clock minus the browser's, from the last answer's "now"
  const setNow = (iso) => {
    if (iso) skew = Date.parse(iso) - Date.now();
  };
  const serverNow = () => Date.now() + skew;
  const num = (n) => Number(n || 0).toLocaleString("en-US");
  // A count that reached the server's cap: at least that many.
  const count = (n, capped) => num(n) + (capped ? "+" : "");
  const plural = (n, word) => `${num(n)} ${word}${n === 1 ? "" : "s"}`;

  function span(ms) {
    const sec = Math.abs(ms) / 1000;
    if (sec < 1) return `${Math.round(Math.abs(ms))}ms`;
    if (sec < 60) return `${sec < 10 ? sec.toFixed(1) : Math.round(sec)}s`;
    const whole = Math.round(sec);
    if (whole < 3600) return `${Math.floor(whole / 60)}m ${whole % 60}s`;
    const minutes = Math.round(sec / 60);
    if (minutes < 48 * 60) return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
    return `${Math.round(minutes / 1440)}d`;
  }

  function relative(iso) {
    if (!iso) return "—";
    const diff = Date.parse(iso) - serverNow();
    if (Math.abs(diff) < 1500) return "just now";
    return diff > 0 ? `in ${span(diff)}` : `${span(diff)} ago`;
  }

  const when = (iso) => (iso ? h("time", { datetime: iso, title: iso }, relative(iso)) : h("span", { class: "muted" }, "—"));

  const clock = (iso) => {
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  };

  const pretty = (value) => {
    try {
      return JSON.stringify(value, null, 2);
    } catch (e) {
      return String(value);
    }
  };

  // --- feedback: toast, confirmation, the connection banner ------------------------------------

  let toastTimer = null;
  function toast(text, bad) {
    const el = document.getElementById("toast");
    el.textContent = text;
    el.className = bad ? "toast bad" : "toast";
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      el.hidden = true;
    }, bad ? 7000 : 3500);
  }

  function confirmAction(title, text, label) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-yes").textContent = label;
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-no").focus();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    });
  }

  const connection = {
    down: false,
    fail(message, reason) {
      const banner = document.getElementById("banner");
      const what = reason === "busy" ? "Database connections busy" : "Database unreachable";
      banner.textContent = `${what}: ${message}. Retrying every 2 s; the page recovers on its own.`;
      banner.hidden = false;
      this.down = true;
    },
    ok() {
      if (!this.down) return;
      this.down = false;
      document.getElementById("banner").hidden = true;
      toast("Database reachable again");
    },
  };

  // --- the JSON API --------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, field, reason) {
      super(message);
      this.status = status;
      this.field = field || null;
      this.reason = reason || null;
      this.unavailable = status === 0 || status === 502 || status === 503;
    }
    describe() {
      return this.field ? `${this.field}: ${this.message}` : this.message;
    }
  }

  async function api(path, body) {
    const init = { method: "GET", headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.headers["X-River-CSRF"] = CSRF;
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(`${BASE}/api${path}`, init);
    } catch (e) {
      throw new ApiError(0, "the dashboard's server does not answer");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, (data && data.error) || `HTTP ${response.status}`, data && data.field, data && data.reason);
    }
    return data;
  }

  // Run a mutation, report its failure; true when it went through.
  async function act(run) {
    try {
      await run();
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.unavailable) {
        connection.fail(e.message, e.reason);
        // The banner says the page retries every 2 s: with refresh off (or a slow one) the
        // page's loop had no tick coming, and the banner stayed after the database was back.
        live.kick();
      }
      toast(e instanceof ApiError ? e.describe() : String(e), true);
      return false;
    }
  }

  // --- live refresh ------------------------------------------------------------------------------

  const REFRESH_KEY = "river-ui-refresh";
  const refreshSelect = document.getElementById("refresh");
  const storedRefresh = (() => {
    try {
      return localStorage.getItem(REFRESH_KEY);
    } catch (e) {
      return null;
    }
  })();
  refreshSelect.value = storedRefresh !== null && [...refreshSelect.options].some((o) => o.value === storedRefresh) ? storedRefresh : "3";
  refreshSelect.addEventListener("change", () => {
    try {
      localStorage.setItem(REFRESH_KEY, refreshSelect.value);
    } catch (e) {
      /* private mode: the choice lasts for this page */
    }
    live.kick();
  });

  class StopLive extends Error {}

  // One page's polling loop. A tick that fails because the database (or the server) is away
  // shows the banner and is retried every 2 s, whatever the refresh setting; the first tick
  // that succeeds again hides it. Hidden tabs do not poll.
  const live = {
    generation: 0,
    timer: null,
    tick: null,
    start(tick) {
      this.tick = tick;
      this.kick();
    },
    stop() {
      this.generation += 1;
      this.tick = null;
      clearTimeout(this.timer);
    },
    kick() {
      const generation = ++this.generation;
      clearTimeout(this.timer);
      const tick = this.tick;
      if (!tick) return;
      const run = async () => {
        if (generation !== this.generation) return;
        let stop = false;
        if (!document.hidden) {
          try {
            await tick();
            if (generation === this.generation) connection.ok();
          } catch (e) {
            if (generation !== this.generation) return;
            if (e instanceof StopLive) stop = true;
            else if (e instanceof ApiError && e.unavailable) connection.fail(e.message, e.reason);
            else toast(e instanceof ApiError ? e.describe() : String(e), true);
          }
        }
        if (stop || generation !== this.generation) return;
        const seconds = Number(refreshSelect.value);
        const delay = connection.down ? 2000 : seconds > 0 ? seconds * 1000 : null;
        if (delay !== null) this.timer = setTimeout(run, delay);
      };
      run();
    },
  };
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) live.kick();
  });

  // --- routing -------------------------------------------------------------------------------------

  function currentPath() {
    let path = location.pathname;
    if (BASE && path.startsWith(BASE)) path = path.slice(BASE.length);
    return path.replace(/\/+$/, "") || "/";
  }

  function navigate(path, replace, state = null) {
    const url = BASE + path;
    if (replace) history.replaceState(state, "", url);
    else history.pushState(state, "", url);
    route();
    window.scrollTo(0, 0);
  }

  document.addEventListener("click", (event) => {
    const a = event.target.closest ? event.target.closest("a") : null;
    if (!a || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || a.target || a.hasAttribute("download")) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin) return;
    const inside = url.pathname === BASE || url.pathname.startsWith(BASE + "/");
    if (!inside || url.pathname.startsWith(BASE + "/static/") || url.pathname.startsWith(BASE + "/api/")) return;
    event.preventDefault();
    navigate(url.pathname.slice(BASE.length) + url.search + url.hash);
  });
  window.addEventListener("popstate", () => route());

  function setNav(name, title) {
    for (const a of document.querySelectorAll(".nav a")) {
      a.classList.toggle("active", a.dataset.nav === name);
    }
    document.title = title ? `${title} · ${TITLE}` : TITLE;
  }

  // A path segment decoded, or null when its percent-encoding is malformed (a hand-typed URL).
  function decoded(segment) {
    try {
      return decodeURIComponent(segment);
    } catch (e) {
      return null;
    }
  }

  function route() {
    live.stop();
    const path = currentPath();
    let m;
    if (path === "/") overviewPage();
    else if (path === "/jobs") jobsPage();
    else if ((m = path.match(/^\/jobs\/(\d+)$/))) jobPage(m[1]);
    else if (path === "/queues" && !new URLSearchParams(location.search).has("name")) queuesPage();
    else if (path === "/queues" && new URLSearchParams(location.search).has("name")) queuePage(new URLSearchParams(location.search).get("name"));
    else if ((m = path.match(/^\/queues\/([^/]+)$/)) && decoded(m[1]) !== null) queuePage(decoded(m[1]));
    else if (path === "/periodic") periodicPage();
    else {
      setNav("", "Not found");
      main.replaceChildren(h("h1", null, "Not found"), h("p", null, "No page here. ", link("/", null, "Back to the overview")));
    }
  }

  // --- shared pieces ---------------------------------------------------------------------------------

  // capped: the states whose count reached the server's cap (shown as "100,000+").
  function stateTiles(states, total, extra, capped) {
    const over = new Set(capped || []);
    const tiles = [link(jobsPath(extra), { class: "tile" }, h("div", { class: "n" }, count(total, over.size > 0)), h("div", { class: "l" }, "all jobs"))];
    for (const state of STATES) {
      tiles.push(
        link(jobsPath({ ...extra, state }), { class: `tile state-${state}`, "data-state": state },
          h("div", { class: "n" }, count(states[state], over.has(state))), h("div", { class: "l" }, state)),
      );
    }
    return tiles;
  }

  // Jobs finalized per minute as stacked bars (completed, discarded, cancelled) and failed
  // attempts as a line over them: a discarded job's last attempt failed too, so stacking the
  // failures on the outcomes would count it twice.
  function throughputChart(data) {
    const n = data.minutes;
    const series = data.series;
    const W = 720;
    const H = 220;
    const left = 44;
    const right = 8;
    const top = 10;
    const bottom = 24;
    const plotW = W - left - right;
    const plotH = H - top - bottom;
    let peak = 0;
    for (let i = 0; i < n; i++) {
      const stack = series.completed[i] + series.discarded[i] + series.cancelled[i];
      peak = Math.max(peak, stack, series.failed[i]);
    }
    const step = niceStep(peak);
    const max = Math.max(step * 4, 4);
    const y = (v) => top + plotH - (v / max) * plotH;
    const bw = plotW / n;
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": "Jobs per minute, last hour" });
    for (let k = 0; k <= 4; k++) {
      const v = step * k;
      svg.append(s("line", { class: k ? "grid-line" : "axis", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
      svg.append(s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, num(v)));
    }
    const since = Date.parse(data.since);
    for (let i = 0; i < n; i++) {
      const x = left + i * bw;
      const g = s("g", null);
      const minute = new Date(since + i * 60000).toISOString();
      g.append(
        s("title", null,
          `${clock(minute)}: completed ${series.completed[i]}, failed attempts ${series.failed[i]}, discarded ${series.discarded[i]}, cancelled ${series.cancelled[i]}`),
      );
      g.append(s("rect", { class: "hit", x, y: top, width: bw, height: plotH }));
      let base = 0;
      for (const name of ["completed", "discarded", "cancelled"]) {
        const v = series[name][i];
        if (!v) continue;
        g.append(s("rect", { class: `s-${name}`, x: x + bw * 0.12, width: Math.max(bw * 0.76, 1), y: y(base + v), height: y(base) - y(base + v) }));
        base += v;
      }
      svg.append(g);
      if (i % 15 === 0 || i === n - 1) {
        svg.append(s("text", { x: x + bw / 2, y: H - 6, "text-anchor": "middle" }, i === n - 1 ? "now" : clock(minute)));
      }
    }
    const points = [];
    for (let i = 0; i < n; i++) points.push(`${(left + i * bw + bw / 2).toFixed(1)},${y(series.failed[i]).toFixed(1)}`);
    if (series.failed.some((v) => v > 0)) {
      svg.append(s("polyline", { class: "failed-line", points: points.join(" ") }));
    }
    const total = (name) => series[name].reduce((a, b) => a + b, 0);
    const legend = h("div", { class: "legend" },
      ["completed", "failed", "discarded", "cancelled"].map((name) =>
        h("span", null, h("span", { class: `sw s-${name}` }), `${name === "failed" ? "failed attempts" : name} ${num(total(name))}`)),
    );
    return [svg, legend];
  }

  function niceStep(peak) {
    const raw = Math.max(peak, 1) / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (m * mag >= raw) return Math.max(Math.ceil(m * mag), 1);
    }
    return Math.ceil(raw);
  }

  const COUNT_COLUMNS = ["available", "running", "scheduled", "retryable", "completed", "discarded"];

  function queueStatus(q) {
    if (!q.known) return h("span", { class: "muted", title: "jobs only: no client has registered this queue" }, "no row");
    return q.paused ? h("span", { class: "badge paused" }, "paused") : h("span", { class: "badge active-q" }, "active");
  }

  function overrideText(override) {
    const parts = [];
    if (override.max_workers !== undefined) parts.push(`max_workers ${override.max_workers}`);
    if (override.fetch_cooldown !== undefined) parts.push(`cooldown ${override.fetch_cooldown}s`);
    if (override.fetch_poll_interval !== undefined) parts.push(`poll ${override.fetch_poll_interval}s`);
    return parts.length ? parts.join(", ") : "—";
  }

  function pauseButton(q, after) {
    if (READ_ONLY || !q.known) return null;
    const pausing = !q.paused;
    return h("button", {
      class: "button small",
      "data-action": pausing ? "pause" : "resume",
      onclick: async () => {
        if (await act(() => api(queueApi(q.name, pausing ? "pause" : "resume"), {}))) {
          toast(`Queue ${q.name} ${pausing ? "paused" : "resumed"} for every client`);
          after();
        }
      },
    }, pausing ? "Pause" : "Resume");
  }

  function queueTable(queues, withActions, after) {
    if (!queues.length) return h("p", { class: "empty" }, "No queues yet.");
    const head = h("tr", null, h("th", null, "Queue"), h("th", null, "Status"),
      COUNT_COLUMNS.map((c) => h("th", { class: "num" }, c)), h("th", { class: "num" }, "total"),
      withActions ? [h("th", null, "Cluster-wide settings"), READ_ONLY ? null : h("th", null, "")] : null);
    const rows = queues.map((q) =>
      h("tr", { "data-queue": q.name },
        h("td", null, link(queuePath(q.name), null, q.name)),
        h("td", null, queueStatus(q)),
        COUNT_COLUMNS.map((c) => h("td", { class: q.counts[c] ? "num" : "num zero" },
          q.counts[c] ? link(jobsPath({ queue: q.name, state: c }), null, count(q.counts[c], (q.capped || []).includes(c))) : "0")),
        h("td", { class: "num" }, link(jobsPath({ queue: q.name }), null, count(q.total, (q.capped || []).length > 0))),
        withActions ? [h("td", { class: "mono" }, overrideText(q.override)), READ_ONLY ? null : h("td", null, pauseButton(q, after))] : null,
      ),
    );
    return h("div", { class: "table-wrap" }, h("table", null, h("thead", null, head), h("tbody", null, rows)));
  }

  // --- overview ------------------------------------------------------------------------------------

  function overviewPage() {
    setNav("overview", "Overview");
    const tiles = h("div", { class: "tiles" }, loading());
    const chart = h("div", null, loading());
    const cluster = h("div", null, loading());
    const queues = h("div", null, loading());
    main.replaceChildren(
      h("h1", null, "Overview"),
      h("p", { class: "sub" }, "Jobs per state, the last hour's throughput, queues and the clients at work. Counts are exact up to 100,000 per queue and state (shown as 100,000+ beyond)."),
      tiles,
      h("div", { class: "grid" }, panel("Throughput, last hour (per minute)", chart), panel("Cluster", cluster)),
      panel("Queues", queues),
    );
    live.start(async () => {
      // The chart is one panel of the page: its failure must not keep the rest from showing.
      const [ov, tp] = await Promise.all([api("/overview"), api("/throughput?minutes=60").catch((e) => e)]);
      setNow(ov.now);
      tiles.replaceChildren(...stateTiles(ov.states, ov.total, {}, ov.capped));
      cluster.replaceChildren(clusterView(ov));
      queues.replaceChildren(queueTable(ov.queues, false));
      showThroughput(chart, tp);
    });
  }

  // The throughput chart in `chart`, or, when its request failed (`tp` is the error), why, in
  // its place. The rest of the page has been drawn by then; a database that went away
  // meanwhile is still reported (the banner) by rethrowing.
  function showThroughput(chart, tp) {
    if (!(tp instanceof Error)) {
      chart.replaceChildren(...throughputChart(tp));
      return;
    }
    const why = tp instanceof ApiError ? tp.describe() : String(tp);
    chart.replaceChildren(h("p", { class: "empty", "data-error": "throughput" }, `Throughput unavailable: ${why}`));
    if (tp instanceof ApiError && tp.unavailable) throw tp;
  }

  function clusterView(ov) {
    const leader = ov.leader
      ? h("dd", null, h("span", { class: "mono" }, ov.leader.id), h("div", { class: "muted" }, "elected ", when(ov.leader.elected_at), ", lease ends ", when(ov.leader.expires_at)))
      : h("dd", { class: "muted" }, "none: no client runs maintenance right now");
    const clients = ov.clients.length
      ? h("table", null,
        h("thead", null, h("tr", null, h("th", null, "Client"), h("th", { class: "num" }, "running"), h("th", null, "last seen"))),
        h("tbody", null, ov.clients.map((c) =>
          h("tr", null, h("td", { class: "mono" }, c.id), h("td", { class: "num" }, num(c.running)), h("td", null, when(c.last_seen))))))
      : h("p", { class: "muted" }, "No client has worked a job in the last 5 minutes.");
    return h("div", null,
      h("dl", { class: "facts" }, h("dt", null, "Leader"), leader),
      h("h2", { class: "muted" }, ""),
      h("div", null, h("p", { class: "muted" }, "Clients seen working jobs in the last 5 minutes (the schema has no registry of idle clients):"), clients),
    );
  }

  // --- job list ------------------------------------------------------------------------------------

  const FILTER_KEYS = ["state", "kind", "queue", "priority", "id", "tag", "q"];

  function listParams() {
    const params = new URLSearchParams(location.search);
    const out = new URLSearchParams();
    for (const [k, v] of params) if (v !== "") out.append(k, v);
    return out;
  }

  function filterKey(params) {
    const copy = new URLSearchParams(params);
    copy.delete("after");
    return copy.toString();
  }

  function describeFilter(params) {
    const parts = [];
    for (const key of FILTER_KEYS) {
      const values = params.getAll(key);
      if (values.length) parts.push(`${key === "q" ? "text" : key} ${values.join(", ")}`);
    }
    return parts.length ? parts.join("; ") : "no filter: every job in the table";
  }

  function filterBody(params) {
    const body = {};
    for (const key of FILTER_KEYS) {
      const values = params.getAll(key);
      if (values.length) body[key] = key === "q" ? values.join(" ") : values;
    }
    return body;
  }

  // The time column a list shows, from the order the server used (sort_column).
  function timeColumn(sortColumn) {
    if (sortColumn === "finalized_at") return { key: "finalized_at", label: "Finalized", order: "when each job was finalized" };
    if (sortColumn === "scheduled_at") return { key: "scheduled_at", label: "Scheduled", order: "scheduled time" };
    if (sortColumn === "attempted_at") return { key: "attempted_at", label: "Started", order: "when each job started" };
    return { key: "created_at", label: "Created", order: "creation time" };
  }

  function jobsPage() {
    setNav("jobs", "Jobs");
    const params = listParams();
    const key = filterKey(params);
    // The cursors of the pages before this one, kept with this history entry (Back, Apply,
    // a tab: each entry has its own; a trail kept for the page shown last made Previous go
    // forward, or show on the first page).
    const state = history.state;
    const trail = state && state.trailKey === key && Array.isArray(state.trail) ? state.trail : [];
    const selected = new Set();
    let allMatching = false;
    let lastPage = [];
    let sortColumn = "id";
    let running = false; // a bulk action is under way: its buttons stay disabled

    const tabs = h("nav", { class: "tabs", "aria-label": "States" });
    const field = (name, label, attrs) =>
      h("label", attrs && attrs.wide ? { class: "wide" } : null, label,
        h("input", { name, value: params.getAll(name).join(","), autocomplete: "off", ...(attrs || {}), wide: null }));
    const priority = h("select", { name: "priority" }, h("option", { value: "" }, "any"),
      [1, 2, 3, 4].map((p) => h("option", { value: String(p), selected: params.get("priority") === String(p) }, String(p))));
    // With no sort in the URL the server picks the filter's default (by time for one finalized
    // state, by id elsewhere): the select shows it once the first page says which it was, and a
    // filter applied without touching the select keeps the default.
    let sortValue = `${params.get("sort") || "id"}:${params.get("order") || "desc"}`;
    const sort = h("select", { name: "sort" },
      [["id:desc", "newest first"], ["id:asc", "oldest first"], ["time:desc", "time, latest first"], ["time:asc", "time, earliest first"]]
        .map(([v, t]) => h("option", { value: v, selected: v === sortValue }, t)));
    const kinds = h("datalist", { id: "kind-list" });
    const queueList = h("datalist", { id: "queue-list" });
    const form = h("form", { class: "filters", role: "search", onsubmit: (ev) => {
      ev.preventDefault();
      const next = new URLSearchParams();
      for (const st of params.getAll("state")) next.append("state", st);
      for (const el of form.elements) {
        if (!el.name || el.name === "sort") continue;
        const v = el.value.trim();
        if (v) next.set(el.name, v);
      }
      const [sortBy, order] = sort.value.split(":");
      if (params.get("sort") || sort.value !== sortValue) next.set("sort", sortBy);
      if (order !== "desc") next.set("order", order);
      navigate(jobsPath(next));
    } },
    field("kind", "Kind", { list: "kind-list", placeholder: "any" }),
    field("queue", "Queue", { list: "queue-list", placeholder: "any" }),
    h("label", null, "Priority", priority),
    field("id", "Job id", { placeholder: "e.g. 42", inputmode: "numeric" }),
    field("tag", "Tag", { placeholder: "any" }),
    field("q", "Text in args or metadata", { placeholder: "text, or a JSON object", wide: true }),
    h("label", null, "Order", sort),
    h("div", { class: "buttons" }, h("button", { class: "button primary", type: "submit" }, "Apply"),
      link(jobsPath(params.getAll("state").length ? { state: params.getAll("state").join(",") } : {}), { class: "button" }, "Clear")),
    kinds, queueList);

    const bulkInfo = h("span", { class: "muted" });
    // The count of every job matching the filter. A text or tag search (no index finds its
    // jobs) is counted by the server a million ids per call, newest first: the page calls again
    // with each answer's "next", showing the progress, until the count is complete. Null when
    // it was given up (clear selection, another page).
    let counting = null;
    async function countMatching() {
      const token = {};
      counting = token;
      let more = {};
      for (;;) {
        const p = filterParams();
        for (const [k, v] of Object.entries(more)) p.set(k, String(v));
        const c = await api(`/jobs/count?${p.toString()}`);
        if (counting !== token || !bulkBar.isConnected) return null;
        if (!c.next) {
          counting = null;
          return c;
        }
        bulkInfo.textContent = `Counting the jobs matching this filter: ${num(c.count)} so far, in jobs down to #${num(c.next.below)}…`;
        more = c.next;
      }
    }
    const selectAll = h("button", { class: "link-button", type: "button", "data-action": "select-all-matching", onclick: async () => {
      try {
        const c = await countMatching();
        if (c === null) return;
        allMatching = true;
        bulkInfo.textContent = `All ${num(c.count)} jobs matching this filter are selected.`;
        updateBulk();
      } catch (e) {
        counting = null;
        updateBulk();
        toast(e instanceof ApiError ? e.describe() : String(e), true);
      }
    } }, "Select all jobs matching this filter");
    const clearSel = h("button", { class: "link-button", type: "button", onclick: () => {
      selected.clear();
      allMatching = false;
      counting = null;
      renderRows();
      updateBulk();
    } }, "clear selection");
    const actionButtons = ["retry", "cancel", "delete"].map((action) =>
      h("button", { class: action === "retry" ? "button small" : "button small danger", type: "button", "data-bulk": action, onclick: () => bulk(action) },
        action[0].toUpperCase() + action.slice(1)));
    const bulkBar = READ_ONLY ? h("div") : h("div", { class: "bulk" }, actionButtons, bulkInfo, selectAll, clearSel);

    const table = h("div", { class: "table-wrap" }, loading());
    const pager = h("div", { class: "pager" });
    const notes = h("div", { class: "notes" });
    main.replaceChildren(h("h1", null, "Jobs"), tabs, panel(null, form), bulkBar, panel(null, notes, table, pager));

    function filterParams() {
      const p = new URLSearchParams(params);
      for (const k of ["after", "sort", "order", "limit"]) p.delete(k);
      return p;
    }

    function updateBulk() {
      if (READ_ONLY) return;
      const any = allMatching || selected.size > 0;
      for (const b of actionButtons) b.disabled = !any || running;
      clearSel.hidden = !any && !counting;
      selectAll.hidden = allMatching || Boolean(counting);
      if (counting) return; // the count's progress stays shown
      if (!allMatching) bulkInfo.textContent = selected.size ? `${num(selected.size)} selected` : "Select jobs to act on them";
    }

    // One bulk action. Over "all matching", the server acts on at most the confirmed count and
    // on a bounded number of jobs per call: the page calls again with its "next" until done,
    // showing the progress. The buttons stay disabled meanwhile (a second click does nothing).
    async function bulk(action) {
      if (running) return;
      const verb = { retry: "Retry", cancel: "Cancel", delete: "Delete" }[action];
      let body;
      let question;
      let total;
      if (allMatching) {
        let c;
        running = true; // counting again: the buttons wait for it
        updateBulk();
        try {
          c = await countMatching();
        } catch (e) {
          counting = null;
          toast(e instanceof ApiError ? e.describe() : String(e), true);
        }
        running = false;
        updateBulk();
        if (!c) return;
        bulkInfo.textContent = `All ${num(c.count)} jobs matching this filter are selected.`;
        total = c.count;
        question = `${verb} all ${num(c.count)} jobs matching this filter (${describeFilter(filterParams())})?\n\nOnly jobs that still match when their turn comes are changed; jobs inserted after this count are left alone; running jobs are not deleted. If more jobs match than this count, the action stops.`;
        body = { action, filter: filterBody(filterParams()), max_id: c.max_id, count: c.count };
      } else {
        total = selected.size;
        question = `${verb} ${num(selected.size)} selected job${selected.size === 1 ? "" : "s"}?`;
        body = { action, ids: [...selected] };
      }
      if (!(await confirmAction(`${verb} jobs`, question, verb))) return;
      running = true;
      updateBulk();
      const sum = { matched: 0, changed: 0, skipped: 0, conflicts: 0 };
      let stopped = null;
      try {
        for (;;) {
          const result = await api("/jobs/bulk", body);
          for (const k of Object.keys(sum)) sum[k] += result[k] || 0;
          stopped = result.stopped;
          if (!result.next || stopped) break;
          bulkInfo.textContent = result.next.checked_id !== undefined && !sum.matched
            ? `${verb}: checking that no more than ${num(total)} jobs match, jobs up to #${num(result.next.checked_id)} of #${num(body.max_id)}…`
            : `${verb}: ${num(sum.matched)} of ${num(total)} jobs done…`;
          body = { ...body, ...result.next };
        }
      } catch (e) {
        if (e instanceof ApiError && e.unavailable) connection.fail(e.message, e.reason);
        stopped = e instanceof ApiError ? e.describe() : String(e);
      }
      running = false;
      const done = { retry: "Retried", cancel: "Cancelled", delete: "Deleted" }[action];
      const left = [];
      if (sum.conflicts) left.push(`${num(sum.conflicts)} kept: another job holds their unique key`);
      if (sum.skipped - sum.conflicts > 0) left.push(`${num(sum.skipped - sum.conflicts)} left as they were`);
      const text = `${done} ${num(sum.changed)} of ${num(sum.matched)} jobs${left.length ? ` (${left.join("; ")})` : ""}`;
      toast(stopped ? `${text}. Stopped: ${stopped}` : text, Boolean(stopped));
      selected.clear();
      allMatching = false;
      updateBulk();
      live.kick();
    }

    function renderRows() {
      const column = timeColumn(sortColumn);
      if (!lastPage.length) {
        table.replaceChildren(h("p", { class: "empty" }, "No jobs match."));
        return;
      }
      const pageBox = READ_ONLY ? null : h("input", { type: "checkbox", "aria-label": "Select this page",
        checked: lastPage.every((j) => selected.has(j.id)),
        onchange: (ev) => {
          for (const j of lastPage) ev.target.checked ? selected.add(j.id) : selected.delete(j.id);
          allMatching = false;
          renderRows();
          updateBulk();
        } });
      const head = h("tr", null, READ_ONLY ? null : h("th", { class: "check" }, pageBox),
        h("th", null, "ID"), h("th", null, "Kind"), h("th", null, "Queue"), h("th", null, "State"),
        h("th", { class: "num" }, "Attempt"), h("th", { class: "num" }, "Prio"), h("th", null, "Args"), h("th", null, "Last error"), h("th", null, column.label));
      const rows = lastPage.map((j) =>
        h("tr", { "data-job": j.id },
          READ_ONLY ? null : h("td", { class: "check" }, h("input", { type: "checkbox", "aria-label": `Select job ${j.id}`, checked: allMatching || selected.has(j.id), disabled: allMatching,
            onchange: (ev) => {
              ev.target.checked ? selected.add(j.id) : selected.delete(j.id);
              updateBulk();
            } })),
          h("td", { class: "mono" }, link(jobPath(j.id), null, String(j.id))),
          h("td", null, j.kind, j.tags.length ? h("div", null, j.tags.map((t) => h("span", { class: "chip" }, t))) : null),
          h("td", null, link(queuePath(j.queue), null, j.queue)),
          h("td", null, badge(j.state)),
          h("td", { class: "num" }, `${j.attempt} / ${j.max_attempts}`),
          h("td", { class: "num" }, String(j.priority)),
          h("td", { class: "args", title: j.args_preview }, j.args_preview + (j.args_truncated ? "…" : "")),
          h("td", { class: "err", title: j.last_error || "" }, j.last_error ? `${j.error_count}× ${j.last_error}` : ""),
          h("td", null, when(j[column.key] || j.created_at)),
        ));
      table.replaceChildren(h("table", null, h("thead", null, head), h("tbody", null, rows)));
    }

    function renderPager(next, short) {
      const buttons = [];
      if (trail.length) {
        buttons.push(h("button", { class: "button", type: "button", onclick: () => {
          const previous = trail[trail.length - 1];
          const p = new URLSearchParams(params);
          if (previous) p.set("after", previous);
          else p.delete("after");
          navigate(jobsPath(p), false, { trailKey: key, trail: trail.slice(0, -1) });
        } }, "← Previous"));
      } else if (params.get("after")) {
        const p = new URLSearchParams(params);
        p.delete("after");
        buttons.push(link(jobsPath(p), { class: "button" }, "← First page"));
      }
      if (next) {
        buttons.push(h("button", { class: "button", type: "button", "data-action": "next-page", onclick: () => {
          const p = new URLSearchParams(params);
          p.set("after", next);
          navigate(jobsPath(p), false, { trailKey: key, trail: [...trail, params.get("after") || ""] });
        } }, short ? (params.get("order") === "asc" ? "Search newer →" : "Search older →") : "Next →"));
      }
      pager.replaceChildren(...buttons);
    }

    function renderTabs(counts) {
      const current = params.getAll("state").join(",");
      const base = new URLSearchParams(params);
      base.delete("after");
      base.delete("state");
      const over = new Set(counts.capped || []);
      const tab = (state, label, n, capped) => {
        const p = new URLSearchParams(base);
        if (state) p.set("state", state);
        return link(jobsPath(p), { class: current === state ? "active" : null, "data-tab": state || "all" }, label, h("span", { class: "count" }, count(n, capped)));
      };
      tabs.replaceChildren(tab("", "all", counts.total, over.size > 0), ...STATES.map((st) => tab(st, st, counts.states[st], over.has(st))));
    }

    let suggestionsLoaded = false;
    live.start(async () => {
      const queues = params.getAll("queue");
      const countPath = queues.length ? `/counts?${queues.map((q) => `queue=${encodeURIComponent(q)}`).join("&")}` : "/counts";
      const [page, counts] = await Promise.all([api(`/jobs?${params.toString()}`), api(countPath)]);
      setNow(page.now);
      renderTabs(counts);
      lastPage = page.jobs;
      sortColumn = page.sort_column;
      if (!params.get("sort") && sort.value === sortValue) {
        sortValue = `${page.sort}:${params.get("order") || "desc"}`; // the server's default
        sort.value = sortValue;
      }
      const lines = [];
      if (page.sort_note) lines.push(h("p", { class: "muted", "data-note": "sort" }, `Ordered by id (creation order): ${page.sort_note}.`));
      if (page.sort === "time") {
        const latest = params.get("order") === "asc" ? "earliest first" : "latest first";
        lines.push(h("p", { class: "muted", "data-note": "order" },
          `Ordered by ${timeColumn(page.sort_column).order}, ${latest}${params.get("sort") ? "" : " (the default here: choose “newest first” to order by id)"}.`));
      }
      if (page.searched) {
        lines.push(h("p", { class: "muted", "data-note": "searched" },
          `Searched jobs #${num(page.searched.low_id)} to #${num(page.searched.high_id)}: ${page.searched.why || "no index serves this list"}, so each page reads ${num(page.searched.window)} ids at most${page.next ? "; the next page reads further" : ""}.`));
      }
      notes.replaceChildren(...lines);
      renderRows();
      renderPager(page.next, Boolean(page.searched) && page.jobs.length < Number(params.get("limit") || 50));
      updateBulk();
      if (!suggestionsLoaded) {
        suggestionsLoaded = true;
        kinds.replaceChildren(...(await api("/kinds")).kinds.map((k) => h("option", { value: k })));
        queueList.replaceChildren(...counts.queues.map((q) => h("option", { value: q })));
      }
    });
  }

  // --- job detail --------------------------------------------------------------------------------------

  function jobPage(id) {
    setNav("jobs", `Job ${id}`);
    const head = h("div", null, loading());
    const actions = h("div", { class: "row actions-row" });
    const facts = h("div");
    const timeline = h("div");
    const sections = h("div");
    main.replaceChildren(head, actions, h("div", { class: "grid" }, panel("Job", facts), panel("Timeline", timeline)), sections);
    let shown = "";

    const jobAction = (job, action) => {
      const verb = { retry: "Retry", cancel: "Cancel", delete: "Delete" }[action];
      // An available job already due is what a retry would make of it: nothing to do.
      const due = job.state === "available" && Date.parse(job.scheduled_at) <= serverNow();
      const enabled = {
        retry: job.state !== "running" && !due,
        cancel: !FINALIZED.has(job.state),
        delete: job.state !== "running",
      }[action];
      const why = action === "retry" && due ? "Nothing to do: the job is available and due, a worker takes it at its next fetch"
        : !enabled && job.state === "running" ? "The job is running" : null;
      return h("button", { class: action === "retry" ? "button" : "button danger", type: "button", "data-action": action, disabled: !enabled, title: why,
        onclick: async () => {
          const text = action === "cancel" && job.state === "running"
            ? `Cancel job ${job.id} (${job.kind})? It is running: the client working it cancels the attempt.`
            : `${verb} job ${job.id} (${job.kind})?`;
          if (!(await confirmAction(`${verb} job`, text, verb))) return;
          if (await act(() => api(`/jobs/${job.id}/${action}`, {}))) {
            toast(`Job ${job.id}: ${action === "delete" ? "deleted" : action === "retry" ? "retried" : "cancel requested"}`);
            if (action === "delete") navigate("/jobs");
            else live.kick();
          }
        } }, verb);
    };

    live.start(async () => {
      let data;
      try {
        data = await api(`/jobs/${id}`);
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          head.replaceChildren(h("h1", null, `Job ${id}`), h("p", { class: "sub" }, "No such job: deleted, cleaned up after its retention, or never inserted. ", link("/jobs", null, "All jobs")));
          actions.replaceChildren();
          facts.replaceChildren();
          timeline.replaceChildren();
          sections.replaceChildren();
          throw new StopLive();
        }
        throw e;
      }
      setNow(data.now);
      const job = data.job;
      setNav("jobs", `${job.kind} ${job.id}`);
      head.replaceChildren(
        h("h1", null, h("span", null, job.kind), h("span", { class: "muted mono" }, `#${job.id}`), badge(job.state)),
        h("p", { class: "sub" }, "queue ", link(queuePath(job.queue), null, job.queue), ` · attempt ${job.attempt} / ${job.max_attempts} · priority ${job.priority} · created `, when(job.created_at)),
      );
      actions.replaceChildren(...(READ_ONLY ? [] : ["retry", "cancel", "delete"].map((a) => jobAction(job, a))));
      facts.replaceChildren(jobFacts(job));
      timeline.replaceChildren(jobTimeline(job));
      const fingerprint = JSON.stringify([job.args_text, job.metadata_text, job.errors, job.attempted_by]);
      if (fingerprint !== shown) {
        // Keep what the reader opened or closed; the first rendering opens all but old traces.
        const open = shown === "" ? null : new Set([...sections.querySelectorAll("details[open]")].map((d) => d.dataset.key));
        shown = fingerprint;
        sections.replaceChildren(...jobSections(job, open));
      }
    });
  }

  function jobFacts(job) {
    const rows = [
      ["ID", h("span", { class: "mono" }, String(job.id))],
      ["Kind", job.kind],
      ["Queue", link(queuePath(job.queue), null, job.queue)],
      ["State", badge(job.state)],
      ["Attempt", `${job.attempt} / ${job.max_attempts}`],
      ["Priority", String(job.priority)],
      ["Tags", job.tags.length ? job.tags.map((t) => h("span", { class: "chip" }, t)) : h("span", { class: "muted" }, "none")],
      ["Created", when(job.created_at)],
      ["Scheduled", when(job.scheduled_at)],
      ["Attempted", when(job.attempted_at)],
      ["Finalized", when(job.finalized_at)],
      ["Attempted by", job.attempted_by.length ? h("span", { class: "mono" }, job.attempted_by.join(", ")) : h("span", { class: "muted" }, "no client yet")],
    ];
    if (job.unique_key) {
      rows.push(["Unique key", h("span", { class: "mono", title: job.unique_key }, job.unique_key.slice(0, 24) + (job.unique_key.length > 24 ? "…" : ""))]);
      rows.push(["Unique states", (job.unique_states || []).join(", ")]);
    }
    return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
  }

  function jobTimeline(job) {
    const events = [];
    // Same instant (an error's "at" is when its attempt started): the order of a job's life.
    let rank = 0;
    const add = (at, cls, text, detail) => {
      if (at) events.push({ at, t: Date.parse(at), cls, text, detail, rank: rank++ });
    };
    add(job.created_at, "", "Created", null);
    if (job.scheduled_at && Math.abs(Date.parse(job.scheduled_at) - Date.parse(job.created_at)) > 1000) {
      const future = Date.parse(job.scheduled_at) > serverNow();
      const label = job.state === "retryable" ? "Retry scheduled" : future ? "Scheduled to run" : "Scheduled";
      add(job.scheduled_at, future ? "wait future" : "wait", label, null);
    }
    if (job.attempted_at) {
      let detail = null;
      if (job.state === "running") detail = `running for ${span(serverNow() - Date.parse(job.attempted_at))}`;
      add(job.attempted_at, job.state === "running" ? "wait" : "", `Attempt ${job.attempt} started`, detail);
    }
    for (const e of job.errors) {
      const line = (e.error || "").split("\n")[0];
      add(e.at, "bad", `Attempt ${e.attempt} failed`, line.length > 140 ? line.slice(0, 140) + "…" : line);
    }
    if (job.finalized_at) {
      let detail = null;
      if (job.attempted_at) detail = `${span(Date.parse(job.finalized_at) - Date.parse(job.attempted_at))} after the attempt started`;
      add(job.finalized_at, job.state === "completed" ? "ok" : "bad", job.state[0].toUpperCase() + job.state.slice(1), detail);
    }
    if (job.state === "available") add(new Date(serverNow()).toISOString(), "wait future", "Waiting for a worker", `queue ${job.queue}`);
    events.sort((a, b) => a.t - b.t || a.rank - b.rank);
    return h("ol", { class: "timeline" }, events.map((ev) =>
      h("li", { class: ev.cls || null }, h("strong", null, ev.text), h("span", { class: "when" }, h("time", { datetime: ev.at, title: ev.at }, `${new Date(ev.at).toLocaleString()} (${relative(ev.at)})`)),
        ev.detail ? h("div", { class: "muted" }, ev.detail) : null)));
  }

  function copyButton(text) {
    return h("button", { class: "button small", type: "button", onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
        toast("Copied");
      } catch (e) {
        toast("The browser refused the clipboard (it needs HTTPS or localhost)", true);
      }
    } }, "Copy");
  }

  // text: the server's exact JSON text (integers beyond 2^53 intact), else the value printed here.
  function jsonSection(title, value, key, open, text = pretty(value)) {
    return h("section", { class: "panel" },
      h("div", { class: "section-head" }, h("h2", null, title), copyButton(text)),
      h("details", { "data-key": key, open: open === null || open.has(key) }, h("summary", null, plural(text.split("\n").length, "line")), h("pre", { class: "json" }, text)));
  }

  function jobSections(job, open) {
    const out = [jsonSection("Args", job.args, "args", open, job.args_text), jsonSection("Metadata", job.metadata, "metadata", open, job.metadata_text)];
    if (job.has_output) out.push(jsonSection("Output", job.output, "output", open, job.output_text));
    const errors = [...job.errors].reverse();
    out.push(h("section", { class: "panel" }, h("h2", null, `Errors (${job.errors.length})`),
      errors.length
        ? errors.map((e, i) => h("div", { class: "error-item", "data-error": e.attempt },
          h("div", null, h("strong", null, `Attempt ${e.attempt}`), " ", h("span", { class: "muted" }, e.at ? `${new Date(e.at).toLocaleString()} (${relative(e.at)})` : "")),
          h("div", { class: "error-text" }, e.error),
          e.trace ? h("details", { "data-key": `trace-${i}`, open: open === null ? i === 0 : open.has(`trace-${i}`) }, h("summary", null, "Trace"), h("pre", { class: "trace" }, e.trace)) : null))
        : h("p", { class: "muted" }, "No attempt has failed.")));
    return out;
  }

  // --- queues --------------------------------------------------------------------------------------

  function queuesPage() {
    setNav("queues", "Queues");
    const box = h("div", null, loading());
    main.replaceChildren(
      h("h1", null, "Queues"),
      h("p", { class: "sub" }, "Pause and resume reach every client on the database, River (Go) ones included. Cluster-wide settings (on each queue's page) reach every river-queue client."),
      panel(null, box),
    );
    live.start(async () => {
      const data = await api("/queues");
      box.replaceChildren(queueTable(data.queues, true, () => live.kick()));
    });
  }

  function queuePage(name) {
    setNav("queues", `Queue ${name}`);
    const head = h("div", null, loading());
    const tiles = h("div", { class: "tiles" });
    const chart = h("div", null, loading());
    const current = h("p", { class: "muted" });
    const settings = h("div");
    const metadata = h("div");
    main.replaceChildren(head, tiles, h("div", { class: "grid" }, panel("Throughput, last hour (per minute)", chart), panel("Cluster-wide settings", current, settings)), metadata);
    let formBuilt = false;
    let known = true;
    let metadataShown = null; // what the Metadata panel shows: rebuilt (and reopened) only on a change

    function buildForm() {
      if (READ_ONLY) {
        settings.replaceChildren(h("p", { class: "muted" }, "Read-only dashboard: settings cannot be changed here."));
        return;
      }
      const input = (field, label, attrs) => {
        const el = h("input", { name: field, type: "number", ...attrs });
        const clear = h("button", { class: "button small", type: "button", "data-clear": field, onclick: () => send({ clear: [field] }) }, "Clear");
        return h("label", null, label, h("div", { class: "field-row" }, el, clear));
      };
      const form = h("form", { class: "form", "data-form": "settings", onsubmit: (ev) => {
        ev.preventDefault();
        const body = {};
        for (const el of form.querySelectorAll("input")) {
          if (el.value.trim() === "") continue;
          body[el.name] = Number(el.value);
        }
        if (!Object.keys(body).length) {
          toast("Give a value to set, or use Clear", true);
          return;
        }
        send(body).then((ok) => {
          if (ok) for (const el of form.querySelectorAll("input")) el.value = "";
        });
      } },
      input("max_workers", "max_workers (jobs at once per client)", { min: 1, max: 10000, step: 1, placeholder: "client's own" }),
      input("fetch_cooldown", "fetch_cooldown (seconds)", { min: 0.001, step: "any", placeholder: "client's own" }),
      input("fetch_poll_interval", "fetch_poll_interval (seconds)", { min: 0.001, step: "any", placeholder: "client's own" }),
      h("div", { class: "row" }, h("button", { class: "button primary", type: "submit" }, "Apply to every client"),
        h("button", { class: "button", type: "button", onclick: () => send({ clear: ["max_workers", "fetch_cooldown", "fetch_poll_interval"] }) }, "Clear all")));
      settings.replaceChildren(form, h("p", { class: "muted" }, "An override wins over each river-queue client's own configuration and applies within about one poll interval, without interrupting running jobs. River (Go) clients ignore it."));
    }

    async function send(body) {
      return act(async () => {
        await api(queueApi(name, "settings"), body);
        toast(`Queue ${name}: settings sent to every client`);
        live.kick();
      });
    }

    live.start(async () => {
      let data;
      try {
        data = await api(queueApi(name));
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          head.replaceChildren(h("h1", null, `Queue ${name}`), h("p", { class: "sub" }, "No such queue: no row in river_queue and no job. ", link("/queues", null, "All queues")));
          throw new StopLive();
        }
        throw e;
      }
      const tp = await api(`/throughput?minutes=60&queue=${encodeURIComponent(name)}`).catch((e) => e);
      const q = data.queue;
      known = q.known;
      head.replaceChildren(
        h("h1", null, h("span", null, q.name), queueStatus(q), pauseButton(q, () => live.kick())),
        h("p", { class: "sub" }, q.known ? ["created ", when(q.created_at), " · updated ", when(q.updated_at), q.paused ? [" · paused ", when(q.paused_at)] : null]
          : "This queue has jobs but no river_queue row: no client has worked it yet, so it cannot be paused or configured."),
      );
      tiles.replaceChildren(...stateTiles(q.counts, q.total, { queue: q.name }, q.capped));
      current.textContent = q.known ? `Override now: ${overrideText(q.override)}` : "";
      if (!known) settings.replaceChildren();
      else if (!formBuilt) {
        formBuilt = true;
        buildForm();
      }
      const shown = q.known ? q.metadata_text : "";
      if (shown !== metadataShown) {
        // Kept open or closed as the reader left it: rebuilt every poll, it reopened each time.
        const details = metadata.querySelector("details");
        const open = metadataShown === null || (details && details.open) ? new Set(["metadata"]) : new Set();
        metadata.replaceChildren(q.known ? jsonSection("Metadata", q.metadata, "metadata", open, q.metadata_text) : "");
        metadataShown = shown;
      }
      showThroughput(chart, tp);
    });
  }

  // --- periodic jobs ---------------------------------------------------------------------------------

  function periodicPage() {
    setNav("periodic", "Periodic jobs");
    const box = h("div", null, loading());
    const seen = h("div");
    main.replaceChildren(h("h1", null, "Periodic jobs"), box, seen);
    live.start(async () => {
      const data = await api("/periodic");
      setNow(data.now);
      if (data.known) {
        const c = data.client;
        box.replaceChildren(panel(`Scheduled by this application's client (${c.id})`,
          h("p", { class: "muted" }, c.running
            ? c.leader ? "This client is the leader: it inserts these jobs." : "This client is running but not the leader: the leader (any client with these periodic jobs) inserts them."
            : "This client is not running: the leader inserts these jobs while one runs."),
          data.jobs.length
            ? h("div", { class: "table-wrap" }, h("table", null,
              h("thead", null, h("tr", null, ["Id", "Schedule", "Kind", "Queue", "Last run", "Next run", "On start"].map((t) => h("th", null, t)))),
              h("tbody", null, data.jobs.map((j) => h("tr", null,
                h("td", { class: "mono" }, j.id || h("span", { class: "muted" }, "(no id)")),
                h("td", { class: "mono" }, j.schedule),
                h("td", null, j.kind || "—"),
                h("td", null, j.queue ? link(queuePath(j.queue), null, j.queue) : "—"),
                h("td", null, j.last_job_id ? link(jobPath(j.last_job_id), null, when(j.last_run)) : "never seen"),
                h("td", null, when(j.next_run)),
                h("td", null, j.run_on_start ? "yes" : "no"))))))
            : h("p", { class: "empty" }, "The client has no periodic jobs.")));
      } else {
        box.replaceChildren(panel("Schedules", h("p", { class: "muted" },
          "This dashboard runs without your application's client, so it does not know the schedules or the next runs. Create it with create_app(url, client=client) to show them. Below: the periodic jobs found in the table.")));
      }
      seen.replaceChildren(panel("Seen in the database",
        data.seen.length
          ? h("div", { class: "table-wrap" }, h("table", null,
            h("thead", null, h("tr", null, ["Id", "Kind", "Queue", "Jobs kept", "Last run"].map((t) => h("th", null, t)))),
            h("tbody", null, data.seen.map((r) => h("tr", null,
              h("td", { class: "mono" }, r.id || h("span", { class: "muted" }, "(no id)")),
              h("td", null, link(jobsPath({ kind: r.kind }), null, r.kind)),
              h("td", null, link(queuePath(r.queue), null, r.queue)),
              h("td", { class: "num" }, num(r.count)),
              h("td", null, link(jobPath(r.last_job_id), null, when(r.last_run))))))))
          : h("p", { class: "empty" }, "No job in the table was inserted as a periodic job.")));
    });
  }

  // --- start ---------------------------------------------------------------------------------------------

  document.getElementById("read-only-badge").hidden = !READ_ONLY;
  route();
})();
