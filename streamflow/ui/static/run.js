// Page "#/run/{id}": one run, live from /api/runs/{id}/stream (one snapshot, then coalesced
// updates). Header and actions, the graph, the timeline, and tabs Jobs / Events / Outputs.
import { follow, getJSON, post } from "./api.js";
import { GraphView } from "./graph.js";
import { badge, el, elapsed, where, fmtDuration, fmtTime, pretty, progress, setChildren, throttle } from "./util.js";

const PAGE = 100;            // jobs per page: the jobs table never has more DOM rows than this
const MAX_EVENT_ROWS = 1000; // the events table keeps the newest this many rows
const FINAL = ["COMPLETED", "FAILED", "CANCELLED"];

export function mountRun(root, runId, setLive) {
  const enc = encodeURIComponent(runId);
  const base = `/api/runs/${enc}`;
  const state = { summary: null, steps: {}, step: null, ended: false, updates: 0,
                  tab: sessionStorage.getItem("sf-tab") || "jobs" };
  const cleanups = [];

  // --- header --------------------------------------------------------------------------
  const title = el("h1", { "data-testid": "run-title" }, runId);
  const status = el("span", { "data-testid": "run-status" });
  const meta = el("div", { class: "meta" });
  const counts = el("div", { class: "meta counts", "data-testid": "run-counts" });
  const errorBox = el("div", { class: "error-box", hidden: true, "data-testid": "run-error", role: "alert" });
  const message = el("div", { class: "notice", hidden: true, "data-testid": "action-message" });
  const button = (label, action, cls) => el("button", { class: cls || "", "data-testid": `action-${action}`,
                                                        onclick: () => confirmAction(action) }, label);
  const actions = el("div", { class: "actions" },
    button("Cancel", "cancel", "danger"), button("Resume", "resume"), button("Rerun", "rerun"));

  // --- graph and timeline ----------------------------------------------------------------
  const graphBox = el("div", { class: "graph", "data-testid": "graph" });
  const ports = el("input", { type: "checkbox", checked: true, "data-testid": "graph-ports" });
  const internal = el("input", { type: "checkbox", "data-testid": "graph-internal" });
  const stepChip = el("span", { class: "chip", hidden: true, "data-testid": "step-filter" });
  const graph = new GraphView(graphBox, (step) => selectStep(step));
  const graphPanel = el("section", { class: "panel" },
    el("div", { class: "panel-head" }, el("h2", {}, "Graph"), stepChip,
      el("label", { class: "small", title: "steps added by the translation: scatter, gather, valueFrom, transforms" },
        internal, " internal steps"),
      el("label", { class: "small" }, ports, " ports"),
      el("button", { class: "small-btn", onclick: () => graph.setAllCollapsed(true) }, "collapse all"),
      el("button", { class: "small-btn", onclick: () => graph.setAllCollapsed(false) }, "expand all"),
      el("button", { class: "small-btn", onclick: () => graph.fit() }, "fit")),
    graphBox);
  ports.addEventListener("change", () => graph.setShowPorts(ports.checked));
  // The subworkflows as buttons too (keyboard, and the canvas is not reachable by screen readers).
  const boxes = el("div", { class: "subworkflows small", "data-testid": "subworkflows", hidden: true });
  graphPanel.insertBefore(boxes, graphBox);
  graph.onLayout = () => {
    const list = graph.workflows();
    boxes.hidden = list.length === 0 || list.length > 20;
    if (boxes.hidden) return;
    setChildren(boxes, el("span", { class: "muted" }, "subworkflows:"), list.map((w) => el("button", {
      class: "small-btn", "data-workflow": w.id, "aria-expanded": String(!w.collapsed),
      title: w.collapsed ? "expand" : "collapse", onclick: () => graph.toggle(w.id),
    }, `${w.collapsed ? "▸" : "▾"} ${w.label}`)));
  };
  internal.addEventListener("change", () => graph.setShowInternal(internal.checked));

  const timelineBox = el("div", { class: "timeline", "data-testid": "timeline" });
  const groupBy = el("select", { "aria-label": "timeline lanes", "data-testid": "timeline-group" },
    el("option", { value: "location" }, "by location"), el("option", { value: "step" }, "by step"));
  const timelinePanel = el("section", { class: "panel" },
    el("div", { class: "panel-head" }, el("h2", {}, "Timeline"), groupBy), timelineBox);

  // --- tabs --------------------------------------------------------------------------------
  const tabs = {};
  const tabBar = el("div", { class: "tabs", role: "tablist" });
  const tabBody = el("div", { class: "tab-body" });
  for (const name of ["jobs", "events", "outputs"]) {
    tabs[name] = { button: el("button", { role: "tab", "data-testid": `tab-${name}`, onclick: () => showTab(name) }, name),
                   body: el("div", { hidden: true, "data-testid": `${name}-panel` }) };
    tabBar.appendChild(tabs[name].button);
    tabBody.appendChild(tabs[name].body);
  }

  const dialog = el("dialog", { class: "confirm", "data-testid": "confirm-dialog" });
  setChildren(root,
    el("div", { class: "breadcrumbs" }, el("a", { href: "#/" }, "Runs"), " / ", el("span", { class: "mono" }, runId)),
    el("div", { class: "run-head" }, el("div", {}, el("div", { class: "title-line" }, status, title), meta, counts), actions),
    errorBox, message,
    graphPanel, timelinePanel,
    tabBar, tabBody, dialog);

  // --- header rendering ------------------------------------------------------------------
  const drawHeader = () => {
    const s = state.summary;
    if (!s) return;
    title.textContent = s.name || runId;
    setChildren(status, badge(s.status));
    const dur = s.duration ?? elapsed(s.submitted_at, s.ended_at);
    const j = s.jobs || {};
    const took = elapsed(s.started_at || s.submitted_at, s.ended_at) || 0;
    const rate = took > 0 ? ((j.completed || 0) / took) : 0;
    setChildren(meta,
      el("span", { class: "mono" }, runId), " · submitted ", fmtTime(s.submitted_at),
      " · ", el("span", { "data-testid": "run-duration" }, fmtDuration(dur)),
      s.rerun_of ? [" · rerun of ", el("a", { href: `#/run/${encodeURIComponent(s.rerun_of)}`, class: "mono" }, s.rerun_of)] : null,
      s.resumed ? " · resumed" : null);
    setChildren(counts,
      progress(j, FINAL.includes(s.status)),
      el("span", { class: "c-completed" }, `${j.completed || 0} completed`),
      j.reused ? el("span", { class: "muted", title: "reused from an earlier run (counted in completed)" }, `(${j.reused} reused)`) : null,
      el("span", { class: j.failed ? "c-failed strong" : "c-muted" }, `${j.failed || 0} failed attempts`),
      j.retried ? el("span", { class: "c-cancelled strong" }, `${j.retried} retried`) : null,
      FINAL.includes(s.status)
        ? ((j.running || 0) + (j.waiting || 0) ? el("span", { class: "c-waiting", title: "running or waiting when the run ended" },
          `${(j.running || 0) + (j.waiting || 0)} not run`) : null)
        : [el("span", { class: "c-running" }, `${j.running || 0} running`), el("span", { class: "c-waiting" }, `${j.waiting || 0} waiting`)],
      el("span", { class: "muted" }, `of ${j.requested || 0} jobs · ${rate.toFixed(2)} jobs/s`));
    const failed = s.status === "FAILED" || s.status === "CANCELLED";
    errorBox.hidden = !(s.error || (failed && s.failed_step));
    if (!errorBox.hidden) {
      setChildren(errorBox, el("strong", {}, s.status === "CANCELLED" ? "Cancelled" : "Failed"),
        s.failed_step ? [" in step ", el("span", { class: "mono" }, (state.steps[s.failed_step] || {}).name || s.failed_step)] : null,
        s.error ? [": ", el("span", { class: "pre-wrap" }, s.error)] : null);
    }
    const running = !FINAL.includes(s.status);
    actions.querySelector("[data-testid=action-cancel]").disabled = !running;
    actions.querySelector("[data-testid=action-resume]").disabled = running || s.status === "COMPLETED";
    actions.querySelector("[data-testid=action-rerun]").disabled = running;
  };
  const ticker = setInterval(() => { if (state.summary && !state.summary.ended_at) drawHeader(); }, 1000);
  cleanups.push(() => clearInterval(ticker));

  // --- actions -------------------------------------------------------------------------------
  const ACTIONS = {
    cancel: { title: "Cancel this run?", text: "Running jobs are stopped and the run ends CANCELLED. It can be resumed later.", go: "Cancel run" },
    resume: { title: "Resume this run?", text: "Starts `streamflow resume` on the server: completed jobs are kept, the rest run again.", go: "Resume" },
    rerun: { title: "Rerun this run?", text: "Starts a new run of the same workflow and inputs (`streamflow rerun`).", go: "Rerun" },
  };
  function confirmAction(action) {
    const spec = ACTIONS[action];
    const reason = action === "cancel" ? el("input", { type: "text", placeholder: "reason (optional)", "data-testid": "cancel-reason" }) : null;
    setChildren(dialog,
      el("h3", {}, spec.title), el("p", {}, spec.text), reason,
      el("div", { class: "dialog-buttons" },
        el("button", { onclick: () => dialog.close(), "data-testid": "confirm-no" }, "Back"),
        el("button", { class: action === "cancel" ? "danger" : "primary", "data-testid": "confirm-yes",
                       onclick: async () => {
                         dialog.close();
                         await act(action, reason ? reason.value : "");
                       } }, spec.go)));
    dialog.showModal();
  }
  async function act(action, reason) {
    message.hidden = false;
    message.className = "notice";
    message.textContent = `${action}…`;
    try {
      const result = await post(`${base}/${action}`, action === "cancel" ? { reason: reason || "cancelled from the UI" } : {});
      message.className = result.ok ? "notice ok" : "notice bad";
      setChildren(message, result.message || (result.ok ? "done" : "refused"),
        result.run_id ? [" ", el("a", { href: `#/run/${encodeURIComponent(result.run_id)}`, "data-testid": "new-run" }, `open ${result.run_id}`)] : null);
      if (result.ok && action === "resume") { state.ended = false; state.resumeUntil = Date.now() + 60000; restartFeed(); }
    } catch (err) {
      message.className = "notice bad";
      message.textContent = `${action} failed: ${err.message}`;
    }
  }

  // --- timeline (shared component) ---------------------------------------------------------
  const timeline = { rows: new Map(), data: null, aggregated: false, version: -1, fetching: false, lastFetch: 0 };
  const keyOf = (a) => `${a.job}\u0000${a.attempt}\u0000${a.delivery}`;
  const drawTimeline = throttle(() => {
    if (!timeline.data) return;
    const data = timeline.aggregated ? timeline.data : { ...timeline.data, jobs: [...timeline.rows.values()] };
    const s = state.summary || {};
    window.SFTimeline.render(timelineBox, { ...data, ended_at: s.ended_at ?? data.ended_at }, {
      groupBy: groupBy.value, now: s.ended_at || Date.now() / 1000,
      onJob: (job) => { location.hash = `#/run/${enc}/job/${encodeURIComponent(job)}`; },
    });
  }, 1000);
  async function fetchTimeline() {
    if (timeline.fetching) return;
    timeline.fetching = true;
    timeline.lastFetch = Date.now();
    try {
      const data = await getJSON(`${base}/timeline`, { by: groupBy.value });
      timeline.data = data;
      timeline.aggregated = !!data.aggregated;
      timeline.version = data.version ?? timeline.version;
      timeline.rows = new Map((data.jobs || []).map((a) => [keyOf(a), a]));
      drawTimeline();
    } catch (err) {
      timelineBox.textContent = `timeline: ${err.message}`;
    } finally {
      timeline.fetching = false;
    }
  }
  function timelineUpdate(update) {
    if (!timeline.data) return;
    if (timeline.aggregated || timeline.rows.size > window.SFTimeline.AGGREGATE_OVER) {
      // Large runs: the server aggregates; fetch again at most every 5 s while it changes.
      if (update.timeline_version !== timeline.version && Date.now() - timeline.lastFetch > 5000) fetchTimeline();
      return;
    }
    for (const a of update.attempts || []) timeline.rows.set(keyOf(a), a);
    drawTimeline();
  }
  groupBy.addEventListener("change", () => { timeline.data = null; fetchTimeline(); });
  const timelineTick = setInterval(() => {
    if (state.summary && !state.summary.ended_at && !timeline.aggregated && timeline.rows.size) drawTimeline();
  }, 2000);
  cleanups.push(() => clearInterval(timelineTick));

  // --- jobs ----------------------------------------------------------------------------------
  // One page (PAGE rows) from the server. A feed update that changed something asks for a
  // refresh at once: at most one request is in flight, and the asks made meanwhile are
  // coalesced into one more request when it ends (an answer overtaken by a newer ask, e.g. a
  // filter change, is dropped). So the table follows the header within one request, and costs
  // at most one /jobs request per feed update (≤ 2/s).
  const jobs = { offset: 0, state: "", q: "", total: 0, busy: false, again: false, shown: "" };
  const jobState = el("select", { "data-testid": "jobs-state", "aria-label": "job state" },
    ["", "waiting", "running", "completed", "failed"].map((s) => el("option", { value: s }, s || "any state")));
  const jobQ = el("input", { type: "search", placeholder: "job id, tag or step", "data-testid": "jobs-q" });
  const jobInfo = el("span", { class: "muted", "data-testid": "jobs-info" });
  const prev = el("button", { class: "small-btn", onclick: () => { jobs.offset = Math.max(0, jobs.offset - PAGE); loadJobs(); } }, "‹ prev");
  const next = el("button", { class: "small-btn", "data-testid": "jobs-next", onclick: () => { jobs.offset += PAGE; loadJobs(); } }, "next ›");
  const jobBody = el("tbody");
  const jobTable = el("table", { class: "grid jobs", "data-testid": "jobs-table" },
    el("thead", {}, el("tr", {}, ["state", "step", "tag", "attempts", "location", "start", "duration", "exit", "error"].map((h) => el("th", {}, h)))),
    jobBody);
  setChildren(tabs.jobs.body, el("div", { class: "toolbar" }, jobState, jobQ, prev, next, jobInfo), jobTable);
  jobState.addEventListener("change", () => { jobs.state = jobState.value; jobs.offset = 0; loadJobs(); });
  jobQ.addEventListener("input", throttle(() => { jobs.q = jobQ.value; jobs.offset = 0; loadJobs(); }, 300));
  // A job still running or waiting when the run ended (failed, cancelled) was stopped or never ran.
  const shownState = (st) => (state.summary && FINAL.includes(state.summary.status)
    ? ({ running: "stopped", waiting: "not run" }[st] || st) : st);
  function jobRow(j) {
    const href = `#/run/${enc}/job/${encodeURIComponent(j.job)}`;
    return el("tr", { class: `clickable${j.state === "failed" ? " row-failed" : ""}${j.attempts > 1 ? " row-retried" : ""}`,
                      "data-job": j.job, "data-state": j.state, onclick: () => { location.hash = href; } },
      el("td", {}, badge(j.reused_from ? "reused" : shownState(j.state))),
      el("td", {}, el("a", { href }, j.step_name || j.step)),
      el("td", { class: "mono" }, j.tag),
      el("td", { class: "num" }, j.attempts > 1 ? el("span", { class: "c-cancelled strong", title: "retried" }, j.attempts) : j.attempts),
      el("td", { class: "mono small" }, where(j.deployment, j.location)),
      el("td", { class: "nowrap" }, fmtTime(j.start)),
      el("td", { class: "num" }, fmtDuration(j.duration ?? (j.start && !j.end ? elapsed(j.start) : null))),
      el("td", { class: "num" }, j.exit_code ?? ""),
      el("td", { class: "error-cell", title: j.error || "" }, j.error || ""));
  }
  async function loadJobs() {
    if (jobs.busy) { jobs.again = true; return; }
    jobs.busy = true;
    try {
      do {
        jobs.again = false;
        const asked = state.updates;
        let data;
        try {
          data = await getJSON(`${base}/jobs`, { state: jobs.state, step: state.step || "", q: jobs.q, offset: jobs.offset, limit: PAGE });
        } catch (err) {
          jobInfo.textContent = err.message;
          break;
        }
        if (jobs.again) continue; // asked again meanwhile (new counts or filters): this answer is stale
        if (jobs.offset >= data.total && data.total > 0) {
          jobs.offset = Math.floor((data.total - 1) / PAGE) * PAGE;
          jobs.again = true;
          continue;
        }
        jobs.total = data.total;
        jobInfo.textContent = data.total ? `${jobs.offset + 1}–${jobs.offset + data.jobs.length} of ${data.total} jobs` : "no job matches";
        prev.disabled = jobs.offset === 0;
        next.disabled = jobs.offset + PAGE >= data.total;
        jobTable.setAttribute("data-update", String(asked));
        jobTable.setAttribute("data-total", String(data.total));
        // Redraw only what changed: an unchanged page keeps its rows (no flicker under the mouse).
        const key = JSON.stringify([state.summary && state.summary.status, data.jobs]);
        if (key === jobs.shown && data.jobs.every((j) => !(j.start && !j.end))) continue;
        jobs.shown = key;
        setChildren(jobBody, data.jobs.map(jobRow));
      } while (jobs.again);
    } finally {
      jobs.busy = false;
    }
  }
  let lastCounts = "";
  const refreshJobs = (force) => {
    const s = state.summary || {};
    const counts = JSON.stringify([s.status, s.jobs]);
    if (!force && counts === lastCounts) return;
    lastCounts = counts;
    if (state.tab === "jobs") loadJobs();
  };

  // --- events --------------------------------------------------------------------------------
  const ev = { next: 0, rows: 0, last: 0 };
  const evType = el("input", { type: "text", placeholder: "types, comma separated (e.g. JobFailed)", "data-testid": "events-type" });
  const evSince = el("input", { type: "number", min: "0", placeholder: "since seq", class: "narrow", "data-testid": "events-since" });
  const evFollow = el("input", { type: "checkbox", checked: true, "data-testid": "events-follow" });
  const evMore = el("button", { class: "small-btn", onclick: () => loadEvents(false) }, "load more");
  const evInfo = el("span", { class: "muted" });
  const evBody = el("tbody");
  setChildren(tabs.events.body,
    el("div", { class: "toolbar" }, evType, evSince, el("button", { class: "small-btn", onclick: () => loadEvents(true) }, "apply"),
      evMore, el("label", { class: "small" }, evFollow, " live tail"), evInfo),
    el("table", { class: "grid events", "data-testid": "events-table" },
      el("thead", {}, el("tr", {}, ["seq", "time", "type", "job / step", "details"].map((h) => el("th", {}, h)))), evBody));
  const types = () => evType.value.split(",").map((t) => t.trim()).filter(Boolean);
  const SKIP = new Set(["seq", "stream_seq", "run_id", "type", "time", "subject", "aggregate", "id", "event_id", "job", "step"]);
  function eventRow(e) {
    const details = Object.fromEntries(Object.entries(e).filter(([k]) => !SKIP.has(k)));
    const bad = /Failed|Cancelled|Abandoned|Lost/.test(e.type);
    return el("tr", { class: bad ? "row-failed" : "", "data-type": e.type },
      el("td", { class: "num mono" }, e.seq), el("td", { class: "nowrap" }, fmtTime(e.time)),
      el("td", { class: "mono" }, e.type), el("td", { class: "mono small" }, e.job || e.step || e.id || ""),
      el("td", { class: "mono small details" }, JSON.stringify(details).slice(0, 400)));
  }
  function appendEvents(list) {
    const frag = document.createDocumentFragment();
    for (const e of list) {
      if (e.seq <= ev.last) continue;
      ev.last = e.seq;
      frag.appendChild(eventRow(e));
      ev.rows += 1;
    }
    evBody.appendChild(frag);
    while (ev.rows > MAX_EVENT_ROWS) { evBody.firstChild.remove(); ev.rows -= 1; }
    evInfo.textContent = `${ev.rows} events shown (newest ${MAX_EVENT_ROWS} kept), last seq ${ev.last}`;
  }
  async function loadEvents(reset) {
    if (reset) { evBody.replaceChildren(); ev.rows = 0; ev.last = 0; ev.next = Number(evSince.value || 0); }
    try {
      const data = await getJSON(`${base}/events`, { type: types(), step: state.step || "", since: ev.next, limit: 500 });
      appendEvents(data.events || []);
      ev.next = data.next_since ?? ev.next;
      evMore.disabled = (data.events || []).length < 500;
    } catch (err) {
      evInfo.textContent = err.message;
    }
  }
  function liveEvents(list) {
    if (!evFollow.checked || !list || !list.length || !evMore.disabled) return;
    const want = new Set(types());
    const stepName = state.step;
    appendEvents(list.filter((e) => (!want.size || want.has(e.type)) && (!stepName || e.step === stepName)
      && e.seq > Number(evSince.value || 0)));
  }

  // --- outputs --------------------------------------------------------------------------------
  async function loadOutputs() {
    try {
      const data = await getJSON(base);
      const out = data.outputs;
      setChildren(tabs.outputs.body, out ? el("pre", { class: "code", "data-testid": "outputs" }, pretty(out))
        : el("p", { class: "muted" }, "No outputs yet (they appear when the run completes)."));
    } catch (err) {
      tabs.outputs.body.textContent = err.message;
    }
  }

  function showTab(name) {
    state.tab = name;
    sessionStorage.setItem("sf-tab", name);
    for (const [key, tab] of Object.entries(tabs)) {
      tab.body.hidden = key !== name;
      tab.button.classList.toggle("active", key === name);
      tab.button.setAttribute("aria-selected", String(key === name));
    }
    if (name === "jobs") loadJobs();
    if (name === "events" && ev.rows === 0) loadEvents(true);
    if (name === "outputs") loadOutputs();
  }

  function selectStep(step) {
    state.step = step;
    graph.select(step);
    stepChip.hidden = !step;
    if (step) {
      setChildren(stepChip, "step ", el("span", { class: "mono" }, (state.steps[step] || {}).name || step), " ",
        el("button", { class: "chip-x", title: "clear", onclick: () => selectStep(null) }, "×"));
    }
    jobs.offset = 0;
    loadJobs();
    if (state.tab === "events") loadEvents(true); else ev.rows = 0;
  }

  // --- the feed -------------------------------------------------------------------------------
  let stopFeed = null;
  function applySteps(rows) {
    for (const row of rows || []) state.steps[row.id] = row;
    graph.setStates(rows || []);
  }
  /** What a snapshot and an update both carry: the summary and the changed steps. */
  function applyFeed(data) {
    state.summary = data.summary;
    state.updates += 1;
    counts.setAttribute("data-updates", String(state.updates));
    if (!FINAL.includes(data.summary.status)) { state.ended = false; state.resumeUntil = 0; }
    applySteps(data.steps);
    drawHeader();
  }
  function restartFeed() {
    if (stopFeed) stopFeed();
    stopFeed = follow(`${base}/stream`, {
      snapshot: (data) => {
        applyFeed(data);
        fetchTimeline();
        refreshJobs(true);
      },
      update: (data) => {
        applyFeed(data);
        timelineUpdate(data);
        refreshJobs(false);
        liveEvents(data.events);
      },
      end: () => {
        state.ended = true;
        fetchTimeline();
        refreshJobs(true);
        if (state.tab === "outputs") loadOutputs();
        // The server closes a finished run's stream: close ours (no reconnection loop). After
        // a Resume, open it again until the run is seen going again (for at most a minute).
        if (stopFeed) { stopFeed(); stopFeed = null; }
        setLive("ended");
        if (state.resumeUntil && Date.now() < state.resumeUntil) setTimeout(restartFeed, 2000);
      },
    }, (s) => setLive(state.ended ? "ended" : s));
  }

  (async () => {
    try {
      const [detail, g] = await Promise.all([getJSON(base), getJSON(`${base}/graph`)]);
      state.summary = detail.summary;
      for (const row of detail.steps || []) state.steps[row.id] = row;
      drawHeader();
      graph.setGraph(g);
      ports.checked = graph.showPorts;
      graph.setStates(detail.steps || []);
      if (g.note) graphPanel.appendChild(el("p", { class: "muted small" }, g.note));
    } catch (err) {
      setChildren(root, el("div", { class: "breadcrumbs" }, el("a", { href: "#/" }, "Runs")),
        el("div", { class: "error-box", "data-testid": "run-missing" }, err.message));
      return;
    }
    showTab(state.tab in tabs ? state.tab : "jobs");
    restartFeed();
  })();

  return () => {
    if (stopFeed) stopFeed();
    cleanups.forEach((f) => f());
    graph.destroy();
    if (timelineBox.data && window.Plotly) window.Plotly.purge(timelineBox);
  };
}
