// Small DOM and formatting helpers shared by the pages. Text always goes through
// textContent (never innerHTML), so nothing read from a run can inject markup.

/** Create an element: el("td", {class: "x", "data-testid": "y"}, child, "text", ...). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "onclick" || key === "oninput" || key === "onchange" || key === "onsubmit") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "text") {
      node.textContent = String(value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace the children of `node`. */
export function setChildren(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export const STATUS_CLASS = {
  SUBMITTED: "waiting", WAITING: "waiting", RUNNING: "running", COMPLETED: "completed",
  FAILED: "failed", CANCELLED: "cancelled", SKIPPED: "skipped", UNKNOWN: "waiting",
  waiting: "waiting", running: "running", completed: "completed", failed: "failed",
  skipped: "skipped", cancelled: "cancelled", reused: "completed", abandoned: "cancelled",
  stopped: "cancelled", "not run": "waiting",
};

/** A coloured status badge. */
export function badge(status) {
  const text = String(status || "unknown");
  return el("span", { class: `badge st-${STATUS_CLASS[text] || "waiting"}`, "data-status": text }, text.toLowerCase());
}

/** Seconds as "850 ms", "12.3 s", "4 m 05 s", "2 h 03 m". */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
}

/** Epoch seconds as local "YYYY-MM-DD HH:MM:SS". */
export function fmtTime(seconds) {
  if (!seconds) return "";
  const d = new Date(seconds * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Elapsed seconds of something that started at `start` and maybe ended at `end`. */
export function elapsed(start, end) {
  if (!start) return null;
  return (end || Date.now() / 1000) - start;
}

/** Call `fn` at most once every `ms` (trailing call guaranteed). */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return (...args) => {
    const wait = last + ms - Date.now();
    if (timer) return;
    timer = setTimeout(() => { timer = null; last = Date.now(); fn(...args); }, Math.max(0, wait));
  };
}

/** A job-count progress bar: completed green, failed red, running blue (unless the run has
 *  ended: what was running then did not finish), the rest grey. */
export function progress(jobs, ended) {
  const total = Math.max(1, jobs.requested || 0);
  const part = (n, cls) => el("span", { class: `seg st-${cls}`, style: `width:${(100 * (n || 0)) / total}%` });
  const done = jobs.completed || 0; // reused jobs are counted in completed
  const left = (jobs.running || 0) + (jobs.waiting || 0);
  const title = ended ? `${done} done, ${jobs.failed || 0} failed, ${left} not run of ${jobs.requested || 0}`
    : `${done} done, ${jobs.failed || 0} failed, ${jobs.running || 0} running, ${jobs.waiting || 0} waiting of ${jobs.requested || 0}`;
  return el("span", { class: "progress", title },
    part(done, "completed"), part(jobs.failed, "failed"), ended ? null : part(jobs.running, "running"));
}

/** Pretty JSON for a <pre>. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** "deployment/location", or the location alone for the local deployment. */
export function where(deployment, loc) {
  if (!loc) return "";
  return deployment === "__LOCAL__" ? loc : `${deployment}/${loc}`;
}
