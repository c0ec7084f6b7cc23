// StreamFlow UI: a single-page app with hash routes (#/, #/run/ID, #/run/ID/job/JOB).
import { getSession } from "./api.js";
import { mountJob } from "./job.js";
import { mountRun } from "./run.js";
import { mountRuns } from "./runs.js";
import { el, setChildren } from "./util.js";

const main = document.getElementById("main");
const live = document.getElementById("live");
let unmount = null;

function setLive(state) {
  const text = { open: "live", reconnecting: "reconnecting…", closed: "disconnected", ended: "run ended" }[state] || state;
  live.textContent = text;
  live.className = `live live-${state}`;
}

function route() {
  if (unmount) { unmount(); unmount = null; }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  window.scrollTo(0, 0);
  if (parts[0] === "run" && parts[1] && parts[2] === "job" && parts[3]) {
    document.title = `${parts[3]} · StreamFlow`;
    setLive("");
    unmount = mountJob(main, parts[1], parts.slice(3).join("/"));
  } else if (parts[0] === "run" && parts[1]) {
    document.title = `${parts[1]} · StreamFlow`;
    unmount = mountRun(main, parts[1], setLive);
  } else {
    document.title = "Runs · StreamFlow";
    unmount = mountRuns(main, setLive);
  }
}

document.addEventListener("sf-unauthorized", () => {
  if (unmount) { unmount(); unmount = null; }
  setChildren(main, el("div", { class: "error-box", "data-testid": "unauthorized" },
    el("strong", {}, "Token required. "),
    "Open the address that `streamflow ui` printed (it ends with ?token=…)."));
});

window.addEventListener("hashchange", route);
getSession().then((s) => { document.getElementById("version").textContent = s.version ? `v${s.version}` : ""; }).catch(() => {});
route();
