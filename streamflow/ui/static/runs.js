// Page "#/": every run, live from /api/runs/stream, filtered by status and name text.
import { follow } from "./api.js";
import { badge, el, elapsed, fmtDuration, fmtTime, progress, setChildren } from "./util.js";

const STATUSES = ["", "SUBMITTED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
const FINAL = ["COMPLETED", "FAILED", "CANCELLED"];

/** Mount the runs list in `root`; returns a function that tears it down. */
export function mountRuns(root, setLive) {
  let runs = [];
  const filter = { status: sessionStorage.getItem("sf-status") || "", text: sessionStorage.getItem("sf-text") || "" };
  const status = el("select", { "data-testid": "status-filter", "aria-label": "status" },
    STATUSES.map((s) => el("option", { value: s, selected: s === filter.status }, s ? s.toLowerCase() : "any status")));
  const text = el("input", { type: "search", placeholder: "filter by name or run id", value: filter.text,
                             "data-testid": "text-filter", "aria-label": "name" });
  const count = el("span", { class: "muted" });
  const body = el("tbody");
  const table = el("table", { class: "grid runs", "data-testid": "runs-table" },
    el("thead", {}, el("tr", {}, ["status", "name", "run id", "submitted", "duration", "jobs", "progress"].map((h) => el("th", {}, h)))),
    body);
  const empty = el("p", { class: "empty", hidden: true }, "No run matches.");
  setChildren(root,
    el("div", { class: "toolbar" }, el("h1", {}, "Runs"), status, text, count),
    table, empty);

  const draw = () => {
    const needle = filter.text.toLowerCase();
    const shown = runs.filter((r) => (!filter.status || r.status === filter.status)
      && (!needle || (r.name || "").toLowerCase().includes(needle) || r.run_id.toLowerCase().includes(needle)));
    count.textContent = `${shown.length} of ${runs.length} runs`;
    empty.hidden = shown.length > 0;
    setChildren(body, shown.slice(0, 500).map((r) => {
      const open = () => { location.hash = `#/run/${encodeURIComponent(r.run_id)}`; };
      const j = r.jobs || {};
      return el("tr", { class: `clickable${r.status === "FAILED" ? " row-failed" : ""}`, "data-run": r.run_id, onclick: open },
        el("td", {}, badge(r.status)),
        el("td", {}, el("a", { href: `#/run/${encodeURIComponent(r.run_id)}` }, r.name || "(unnamed)"),
          r.rerun_of ? el("span", { class: "muted small" }, ` rerun of ${r.rerun_of}`) : null),
        el("td", { class: "mono" }, r.run_id),
        el("td", { class: "nowrap" }, fmtTime(r.submitted_at)),
        el("td", { class: "nowrap num", "data-tick": r.ended_at ? null : String(r.submitted_at || "") },
          fmtDuration(r.duration ?? elapsed(r.submitted_at, r.ended_at))),
        el("td", { class: "nowrap counts" },
          el("span", { class: "c-completed", title: "completed (reused ones included)" }, `${j.completed || 0} done`),
          j.reused ? el("span", { class: "muted", title: "reused from an earlier run" }, ` (${j.reused} reused)`) : null,
          j.failed ? el("span", { class: "c-failed", title: "failed attempts" }, ` ${j.failed} failed`) : null,
          FINAL.includes(r.status) ? ((j.running || 0) + (j.waiting || 0)
            ? el("span", { class: "c-waiting", title: "running or waiting when the run ended" }, ` ${(j.running || 0) + (j.waiting || 0)} not run`) : null)
            : [j.running ? el("span", { class: "c-running", title: "running" }, ` ${j.running} running`) : null,
              j.waiting ? el("span", { class: "c-waiting", title: "waiting" }, ` ${j.waiting} waiting`) : null]),
        el("td", {}, progress(j, FINAL.includes(r.status))));
    }));
  };
  status.addEventListener("change", () => { filter.status = status.value; sessionStorage.setItem("sf-status", filter.status); draw(); });
  text.addEventListener("input", () => { filter.text = text.value; sessionStorage.setItem("sf-text", filter.text); draw(); });

  const stop = follow("/api/runs/stream", { runs: (data) => { runs = data.runs || []; draw(); } }, setLive);
  const ticker = setInterval(() => {
    for (const cell of body.querySelectorAll("td[data-tick]")) {
      const start = Number(cell.getAttribute("data-tick"));
      if (start) cell.textContent = fmtDuration(elapsed(start));
    }
  }, 1000);
  return () => { stop(); clearInterval(ticker); };
}
