/*
 * StreamFlow job timeline: ONE component for the HTML page of `streamflow report` (which
 * inlines this file next to plotly.js) and for the run page of `streamflow ui`.
 *
 * A classic script (not an ES module) so that a report opened from disk runs it inline; it
 * defines `window.SFTimeline` and needs `window.Plotly`.
 *
 * Input: the report's data (`RunSummary.timeline()`): `{run_id, name, status, submitted_at,
 * ended_at, jobs: [attempt rows], ...}`, each attempt row having job, step, step_name, tag,
 * attempt, deployment, location, worker, status, start, end, duration, exit_code, error.
 *
 * Two views:
 *  - detailed (up to AGGREGATE_OVER attempts): one horizontal bar per attempt, lanes by
 *    location or by step; a lane with parallel attempts is split in numbered rows (attempts
 *    packed greedily into the first free row), coloured by status;
 *  - aggregated (more attempts, or too many rows): per lane, the number of attempts running
 *    in each of 160 time slices (stacked bars), failed attempts as red marks. Bars for 10,000
 *    attempts would be unreadable and slow; counts stay readable at any size.
 */
(function (root) {
  "use strict";

  var COLOURS = {
    COMPLETED: "#2e9b57",
    FAILED: "#d0463c",
    RUNNING: "#2f6fd6",
    CANCELLED: "#d98e1c",
    INTERRUPTED: "#d98e1c",
    WAITING: "#9aa1a9",
  };
  var AGGREGATE_OVER = 2000;   // attempts
  var MAX_ROWS = 80;           // packed rows beyond which the detailed view is unreadable
  var LANE_PALETTE = ["#2f6fd6", "#2e9b57", "#8a5cc7", "#d98e1c", "#17a2b8", "#c4487d",
                      "#6b8e23", "#b5651d", "#4b6584", "#e17055"];

  function laneOf(row, groupBy) {
    if (groupBy === "step") { return row.step_name || row.step; }
    if (row.deployment === "__LOCAL__") { return row.location || "local"; }
    return (row.deployment || "?") + "/" + (row.location || "?");
  }

  function endOf(row, now) {
    if (row.end !== null && row.end !== undefined) { return row.end; }
    return Math.max(now, row.start);
  }

  /** The browser's local wall-clock time of an epoch second, without a zone (plotly shows date
   * strings as written, so this puts the axis in the same time as the tables' timestamps). */
  function iso(seconds) {
    var d = new Date(seconds * 1000);
    function p(n, w) { return String(n).padStart(w || 2, "0"); }
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" +
      p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
  }

  /** Attempts sorted by start, each given a lane and a row within the lane. */
  function pack(rows, groupBy, now) {
    var sorted = rows.slice().sort(function (a, b) { return a.start - b.start; });
    var lanes = [];          // lane names in order of first start
    var slotsByLane = {};    // lane -> [end time of the last attempt in each row]
    var placed = [];
    for (var i = 0; i < sorted.length; i++) {
      var row = sorted[i];
      var lane = laneOf(row, groupBy);
      var slots = slotsByLane[lane];
      if (!slots) { slots = slotsByLane[lane] = []; lanes.push(lane); }
      var slot = -1;
      for (var s = 0; s < slots.length; s++) {
        if (slots[s] <= row.start + 1e-6) { slot = s; break; }
      }
      if (slot < 0) { slot = slots.length; slots.push(0); }
      slots[slot] = endOf(row, now);
      placed.push({ row: row, lane: lane, slot: slot });
    }
    var totalRows = 0;
    lanes.forEach(function (lane) { totalRows += slotsByLane[lane].length; });
    return { placed: placed, lanes: lanes, slotsByLane: slotsByLane, totalRows: totalRows };
  }

  function rowLabel(lane, slot, count) {
    return count > 1 ? lane + " #" + (slot + 1) : lane;
  }

  function detailed(data, opts, packed, now) {
    var categories = [];
    packed.lanes.forEach(function (lane) {
      var n = packed.slotsByLane[lane].length;
      for (var s = 0; s < n; s++) { categories.push(rowLabel(lane, s, n)); }
    });
    var byStatus = {};
    var ended = data.ended_at !== null && data.ended_at !== undefined;
    packed.placed.forEach(function (p) {
      var status = p.row.status || "RUNNING";
      // An attempt still open when the run ended (failed or cancelled) was stopped with it.
      if (ended && status === "RUNNING" && (p.row.end === null || p.row.end === undefined)) { status = "INTERRUPTED"; }
      var trace = byStatus[status];
      if (!trace) {
        trace = byStatus[status] = {
          type: "bar", orientation: "h", name: status.toLowerCase(),
          y: [], base: [], x: [], customdata: [],
          marker: { color: COLOURS[status] || COLOURS.WAITING, line: { color: "#ffffff", width: 0.5 } },
          hovertemplate: "<b>%{customdata[1]}</b> [%{customdata[2]}] attempt %{customdata[3]}<br>" +
            "%{customdata[4]} in %{customdata[5]}<br>job %{customdata[0]}<br>" +
            "%{customdata[6]}<extra></extra>",
        };
      }
      var row = p.row;
      var end = endOf(row, now);
      var place = (row.deployment || "?") + "/" + (row.location || "?") + (row.worker ? " (" + row.worker + ")" : "");
      var took = row.duration !== null && row.duration !== undefined
        ? row.duration.toFixed(3) + " s"
        : (status === "INTERRUPTED" ? "stopped with the run after " : "running ") + (end - row.start).toFixed(1) + " s";
      trace.y.push(rowLabel(p.lane, p.slot, packed.slotsByLane[p.lane].length));
      trace.base.push(iso(row.start));
      trace.x.push(Math.max(1, (end - row.start) * 1000));
      trace.customdata.push([row.job, row.step_name || row.step, row.tag, row.attempt,
                             status.toLowerCase(), took, row.error ? "error: " + String(row.error).slice(0, 200) : place]);
    });
    var order = ["COMPLETED", "RUNNING", "FAILED", "CANCELLED", "INTERRUPTED"];
    var traces = Object.keys(byStatus).sort(function (a, b) {
      return order.indexOf(a) - order.indexOf(b);
    }).map(function (k) { return byStatus[k]; });
    var layout = baseLayout(data, opts);
    layout.barmode = "overlay";
    layout.bargap = 0.25;
    layout.yaxis = {
      type: "category", categoryorder: "array", categoryarray: categories,
      autorange: "reversed", automargin: true,
    };
    layout.height = Math.max(260, 24 * categories.length + 150);
    return { traces: traces, layout: layout };
  }

  function aggregated(data, opts, rows, now) {
    // Time is cut in BUCKETS equal slices; per lane, the seconds of attempts running in each
    // slice divided by its width is the mean number of attempts running there (stacked bars).
    var BUCKETS = 160;
    var t0 = Infinity, t1 = -Infinity;
    rows.forEach(function (row) {
      t0 = Math.min(t0, row.start);
      t1 = Math.max(t1, endOf(row, now));
    });
    var width = Math.max((t1 - t0) / BUCKETS, 1e-3);
    var busyByLane = {}, lanes = [];
    var failedX = [], failedText = [];
    rows.forEach(function (row) {
      var lane = laneOf(row, opts.groupBy);
      var busy = busyByLane[lane];
      if (!busy) {
        busy = busyByLane[lane] = new Float64Array(BUCKETS);
        lanes.push(lane);
      }
      var start = row.start, end = endOf(row, now);
      var first = Math.min(BUCKETS - 1, Math.floor((start - t0) / width));
      var last = Math.min(BUCKETS - 1, Math.floor((end - t0) / width));
      for (var b = first; b <= last; b++) {
        var lo = t0 + b * width, hi = lo + width;
        busy[b] += Math.max(0, Math.min(end, hi) - Math.max(start, lo));
      }
      if (row.status === "FAILED") {
        failedX.push(iso(end));
        failedText.push(lane + ": " + (row.step_name || row.step) + " [" + row.tag + "] failed");
      }
    });
    lanes.sort();
    var xs = [];
    for (var i = 0; i < BUCKETS; i++) { xs.push(iso(t0 + (i + 0.5) * width)); }
    var traces = lanes.map(function (lane, k) {
      var busy = busyByLane[lane];
      return {
        type: "bar", name: lane, x: xs, y: Array.prototype.map.call(busy, function (v) {
          return Math.round((v / width) * 100) / 100;
        }),
        width: width * 1000,
        marker: { color: LANE_PALETTE[k % LANE_PALETTE.length] },
        hovertemplate: "%{y} running on average<extra>" + lane.replace(/</g, "&lt;") + "</extra>",
      };
    });
    if (failedX.length) {
      traces.push({
        type: "scatter", mode: "markers", name: "failed attempt", x: failedX,
        y: failedX.map(function () { return 0; }), text: failedText,
        marker: { color: COLOURS.FAILED, symbol: "x", size: 7 },
        hovertemplate: "%{text}<extra></extra>",
      });
    }
    return { traces: traces, layout: aggregatedLayout(data, opts, "attempts running (mean)",
      rows.length + " attempts, aggregated: mean number running per " +
        (opts.groupBy === "step" ? "step" : "location") + " in " + BUCKETS + " time slices of " +
        width.toFixed(width < 10 ? 2 : 0) + " s; failed attempts marked x") };
  }

  /** The layout of both aggregated views: stacked bars of attempts running per slice, and a
   *  line above the plot saying how they were aggregated. */
  function aggregatedLayout(data, opts, yTitle, text) {
    var layout = baseLayout(data, opts);
    layout.barmode = "stack";
    layout.bargap = 0;
    layout.yaxis = { title: { text: yTitle }, rangemode: "tozero", automargin: true };
    layout.height = 380;
    layout.annotations = [{
      xref: "paper", yref: "paper", x: 0, y: 1.02, yanchor: "bottom", showarrow: false, xanchor: "left",
      font: { size: 12, color: "#59616b" }, text: text,
    }];
    return layout;
  }

  /** The server's aggregation (``GET /api/runs/{run}/timeline`` over 2,000 attempts):
   *  ``buckets = {start, width, count, by, lanes: [{lane, running: [n per slice], completed,
   *  failed}]}`` where running counts the attempts overlapping each slice; ``jobs`` then holds
   *  the failed attempts only. */
  function serverAggregated(data, opts) {
    var b = data.buckets;
    var xs = [];
    for (var i = 0; i < b.count; i++) { xs.push(iso(b.start + (i + 0.5) * b.width)); }
    var lanes = b.lanes.slice().sort(function (x, y) { return x.lane < y.lane ? -1 : 1; });
    var traces = lanes.map(function (lane, k) {
      return {
        type: "bar", name: lane.lane + " (" + lane.completed + " done, " + lane.failed + " failed)",
        x: xs, y: lane.running, width: b.width * 1000,
        marker: { color: LANE_PALETTE[k % LANE_PALETTE.length] },
        hovertemplate: "%{y} attempts running<extra>" + String(lane.lane).replace(/</g, "&lt;") + "</extra>",
      };
    });
    var failed = (data.jobs || []).filter(function (r) { return r.status === "FAILED"; });
    if (failed.length) {
      traces.push({
        type: "scatter", mode: "markers", name: "failed attempt",
        x: failed.map(function (r) { return iso(r.end || r.start); }),
        y: failed.map(function () { return 0; }),
        text: failed.map(function (r) { return (r.step_name || r.step) + " [" + r.tag + "] failed"; }),
        customdata: failed.map(function (r) { return [r.job]; }),
        marker: { color: COLOURS.FAILED, symbol: "x", size: 7 },
        hovertemplate: "%{text}<extra></extra>",
      });
    }
    var layout = aggregatedLayout(data, opts, "attempts running",
      "aggregated by the server: attempts running per " + (b.by === "step" ? "step" : "location") +
        " in " + b.count + " time slices of " + b.width.toFixed(b.width < 10 ? 2 : 0) + " s; failed attempts marked x");
    return { traces: traces, layout: layout };
  }

  function baseLayout(data, opts) {
    var layout = {
      margin: { l: 10, r: 20, t: opts.title ? 50 : 36, b: 50 },
      xaxis: { type: "date", title: { text: "local time" }, automargin: true },
      legend: { orientation: "h", y: -0.2 },
      showlegend: true,
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#fbfbfc",
      font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12, color: "#1f2328" },
      hovermode: "closest",
    };
    if (opts.title) { layout.title = { text: opts.title, x: 0, xanchor: "left", font: { size: 15 } }; }
    return layout;
  }

  /**
   * Draw (or redraw: Plotly.react keeps the zoom when uirevision is unchanged) the timeline of
   * `data` into `el`.
   * opts: groupBy ("location" | "step"), title, now (epoch seconds; running attempts end
   * there; default: the run's end or the latest time seen), onJob(jobId) called on a click,
   * aggregate (true/false to force a view; default: by size).
   * Returns the view drawn: "detailed", "aggregated" or "empty".
   */
  function render(el, data, opts) {
    opts = opts || {};
    var rows = (data && data.jobs) || [];
    var now = opts.now;
    if (now === undefined || now === null) {
      now = data.ended_at || rows.reduce(function (m, r) { return Math.max(m, r.end || r.start); }, 0);
    }
    var Plotly = root.Plotly;
    if (!rows.length && !(data.aggregated && data.buckets)) {
      if (el.data) { Plotly.purge(el); }
      el.innerHTML = "";
      var empty = document.createElement("p");
      empty.className = "sf-timeline-empty";
      empty.textContent = "No job has started yet.";
      el.appendChild(empty);
      return "empty";
    }
    var packed = null;
    var aggregate = opts.aggregate;
    if (data.aggregated && data.buckets) {
      return draw(el, data, opts, serverAggregated(data, opts), true);
    }
    if (aggregate === undefined) {
      aggregate = rows.length > AGGREGATE_OVER;
      if (!aggregate) {
        packed = pack(rows, opts.groupBy, now);
        aggregate = packed.totalRows > MAX_ROWS;
      }
    }
    var view = aggregate ? aggregated(data, opts, rows, now)
                         : detailed(data, opts, packed || pack(rows, opts.groupBy, now), now);
    return draw(el, data, opts, view, aggregate);
  }

  function draw(el, data, opts, view, aggregate) {
    var Plotly = root.Plotly;
    view.layout.uirevision = (data.run_id || "") + ":" + (opts.groupBy || "location") + ":" + (aggregate ? "a" : "d");
    var config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
    var empty2 = el.querySelector(".sf-timeline-empty");
    if (empty2) { el.removeChild(empty2); }
    if (!el.data) {
      Plotly.newPlot(el, view.traces, view.layout, config);
    } else {
      Plotly.react(el, view.traces, view.layout, config);
    }
    el.setAttribute("data-view", aggregate ? "aggregated" : "detailed");
    el.setAttribute("data-attempts", String((data.jobs || []).length));
    if (opts.onJob && !el.__sfClick) {
      el.__sfClick = true;
      el.on("plotly_click", function (event) {
        var point = event && event.points && event.points[0];
        if (point && point.customdata && el.__sfOnJob) { el.__sfOnJob(point.customdata[0]); }
      });
    }
    el.__sfOnJob = opts.onJob;
    return aggregate ? "aggregated" : "detailed";
  }

  /** The report page: read the embedded data and draw it, with a "group by" switch. */
  function renderReport(dataId, elId, groupBy) {
    var data = JSON.parse(document.getElementById(dataId).textContent);
    var el = document.getElementById(elId);
    var select = document.getElementById("sf-group-by");
    if (select) {
      select.value = groupBy;
      select.addEventListener("change", function () { render(el, data, { groupBy: select.value }); });
    }
    render(el, data, { groupBy: groupBy });
  }

  root.SFTimeline = {
    render: render,
    renderReport: renderReport,
    pack: pack,
    COLOURS: COLOURS,
    AGGREGATE_OVER: AGGREGATE_OVER,
  };
})(typeof window !== "undefined" ? window : this);
