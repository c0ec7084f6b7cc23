// Page "#/run/{id}/job/{job}": one job: its fields, attempts, inputs/outputs, stdout/stderr tails.
import { getJSON } from "./api.js";
import { badge, el, where, fmtDuration, fmtTime, pretty, setChildren } from "./util.js";

export function mountJob(root, runId, jobId) {
  const enc = encodeURIComponent(runId);
  const crumbs = el("div", { class: "breadcrumbs" }, el("a", { href: "#/" }, "Runs"), " / ",
    el("a", { href: `#/run/${enc}`, class: "mono" }, runId), " / ", el("span", { class: "mono" }, jobId));
  setChildren(root, crumbs, el("p", { class: "muted" }, "loading…"));
  let timer = null;
  let alive = true;

  const field = (name, value, mono) => el("tr", {}, el("th", {}, name),
    el("td", { class: mono ? "mono" : "" }, value === null || value === undefined || value === "" ? "—" : value));

  async function load() {
    let j;
    try {
      j = await getJSON(`/api/runs/${enc}/jobs/${encodeURIComponent(jobId)}`);
    } catch (err) {
      setChildren(root, crumbs, el("div", { class: "error-box", "data-testid": "job-missing" }, err.message));
      return;
    }
    if (!alive) return;
    const last = (j.attempts || [])[j.attempts.length - 1] || {};
    const failed = j.state === "failed";
    const attempts = el("table", { class: "grid", "data-testid": "attempts" },
      el("thead", {}, el("tr", {}, ["#", "status", "delivery", "location", "worker", "start", "end", "duration", "exit", "error"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (j.attempts || []).map((a) => el("tr", { class: a.status === "FAILED" ? "row-failed" : "" },
        el("td", { class: "num" }, a.attempt), el("td", {}, badge(a.status)), el("td", { class: "num" }, a.delivery),
        el("td", { class: "mono small" }, where(a.deployment, a.location)), el("td", { class: "mono small" }, a.worker),
        el("td", { class: "nowrap" }, fmtTime(a.start)), el("td", { class: "nowrap" }, fmtTime(a.end)),
        el("td", { class: "num" }, fmtDuration(a.duration)), el("td", { class: "num" }, a.exit_code ?? ""),
        el("td", { class: "error-cell wrap" }, a.error || "")))));
    const tail = (name, text) => el("section", { class: "panel" }, el("h2", {}, name),
      text === null || text === undefined ? el("p", { class: "muted" }, j.tail_note || "not available")
        : el("pre", { class: `code tail${name === "stderr" && failed ? " tail-bad" : ""}`, "data-testid": `${name}-tail` }, text || "(empty)"));
    setChildren(root, crumbs,
      el("div", { class: "run-head" }, el("div", {},
        el("div", { class: "title-line" }, badge(j.reused_from ? "reused" : j.state),
          el("h1", { "data-testid": "job-title" }, `${j.step_name || j.step} `, el("span", { class: "mono muted" }, `[${j.tag}]`))),
        el("div", { class: "meta mono" }, j.job))),
      j.error ? el("div", { class: "error-box", role: "alert", "data-testid": "job-error" },
        el("strong", {}, `Failed${last.exit_code !== null && last.exit_code !== undefined ? ` (exit code ${last.exit_code})` : ""}: `),
        el("span", { class: "pre-wrap" }, j.error)) : null,
      el("div", { class: "two-col" },
        el("section", { class: "panel" }, el("h2", {}, "Job"), el("table", { class: "fields", "data-testid": "job-fields" }, el("tbody", {},
          field("state", j.state), field("step", j.step_name || j.step, true), field("tag", j.tag, true),
          field("location", where(j.deployment, j.location), true),
          field("command", j.command ? j.command.join(" ") : "", true),
          j.command_note && j.command ? el("tr", {}, el("th", {}, ""), el("td", { class: "muted small" }, j.command_note)) : null,
          field("working directory", j.workdir, true),
          field("requested", fmtTime(j.requested_at)), field("scheduled", fmtTime(j.scheduled_at)),
          field("started", fmtTime(j.start)), field("ended", fmtTime(j.end)), field("duration", fmtDuration(j.duration)),
          field("exit code", j.exit_code ?? ""), field("attempts", j.attempts ? j.attempts.length : 0),
          j.retries ? field("retries", j.retries) : null, j.rollbacks ? field("rollbacks", j.rollbacks) : null,
          j.reused_from ? field("reused from", j.reused_from, true) : null,
          j.abandoned ? field("abandoned", "yes") : null))),
        el("section", { class: "panel" }, el("h2", {}, "Inputs"), el("pre", { class: "code", "data-testid": "job-inputs" }, pretty(j.inputs || {})),
          el("h2", {}, "Outputs"), el("pre", { class: "code", "data-testid": "job-outputs" }, j.outputs ? pretty(j.outputs) : "—"))),
      el("section", { class: "panel" }, el("h2", {}, "Attempts"), attempts),
      el("div", { class: "two-col" }, tail("stderr", j.stderr_tail), tail("stdout", j.stdout_tail)));
    if (j.state === "running" || j.state === "waiting") timer = setTimeout(load, 3000);
  }
  load();
  return () => { alive = false; clearTimeout(timer); };
}
