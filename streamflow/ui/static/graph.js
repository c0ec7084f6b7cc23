// The workflow graph (steps, ports, nested subworkflows) drawn with cytoscape + dagre, coloured
// by step state. A subworkflow box collapses into one node on a double click (or its button);
// a click on a step calls onStep(stepId).
const cytoscape = window.cytoscape;
if (cytoscape && window.cytoscapeDagre && !cytoscape.__sfDagre) {
  cytoscape.use(window.cytoscapeDagre);
  cytoscape.__sfDagre = true;
}

const STATE_COLOURS = {
  waiting: "#c9ced4", running: "#2f6fd6", completed: "#2e9b57", failed: "#d0463c",
  skipped: "#b8bec6", cancelled: "#d98e1c",
};

const STYLE = [
  { selector: "node", style: {
    label: "data(label)", "font-size": 11, "font-family": "system-ui, sans-serif", color: "#1f2328",
    "text-valign": "center", "text-halign": "center", "text-wrap": "ellipsis", "text-max-width": 150,
  } },
  { selector: "node[kind = 'step']", style: {
    shape: "round-rectangle", width: "data(w)", height: 28,
    "background-color": "data(fill)", "border-width": 1, "border-color": "#5b636d", color: "data(ink)",
  } },
  { selector: "node[kind = 'step'][?failed]", style: { "border-width": 3, "border-color": "#8f1d16" } },
  { selector: "node[kind = 'input'], node[kind = 'output']", style: {
    shape: "tag", width: "data(w)", height: 22, "background-color": "#eef1f4",
    "border-width": 1, "border-color": "#8a929c", "font-size": 10,
  } },
  { selector: "node[kind = 'port']", style: {
    shape: "ellipse", width: 9, height: 9, "background-color": "#8a929c", label: "data(label)",
    "font-size": 9, color: "#6b737d", "text-valign": "bottom", "text-margin-y": 2,
  } },
  { selector: "node[kind = 'workflow']", style: {
    shape: "round-rectangle", "background-color": "#f6f8fa", "background-opacity": 1,
    "border-width": 1, "border-style": "dashed", "border-color": "#8a929c",
    "text-valign": "top", "text-halign": "center", "font-weight": "bold", "font-size": 11, padding: 12,
  } },
  { selector: "node[kind = 'workflow'][?collapsed]", style: {
    "border-style": "double", "border-width": 3, "background-color": "data(fill)", color: "data(ink)",
    "text-valign": "center", width: "data(w)", height: 30, padding: 0,
  } },
  { selector: "node.selected", style: { "overlay-color": "#2f6fd6", "overlay-opacity": 0.18, "overlay-padding": 5 } },
  { selector: "edge", style: {
    width: 1.2, "line-color": "#9aa1a9", "target-arrow-color": "#9aa1a9", "target-arrow-shape": "triangle",
    "arrow-scale": 0.8, "curve-style": "bezier",
  } },
];

// Steps the CWL translation adds around the tools (scatter, gather, valueFrom, type
// transforms): hidden unless asked for, the edges go through them.
const INTERNAL = new Set(["scatter", "gather", "transform", "value_from"]);
const isInternal = (n) => n.kind === "step" && INTERNAL.has(n.step_kind);

/** Aggregate state of the steps inside a collapsed subworkflow. */
function combined(states) {
  if (states.includes("failed")) return "failed";
  if (states.includes("running")) return "running";
  if (states.length && states.every((s) => s === "completed" || s === "skipped")) return "completed";
  return states.includes("completed") ? "running" : "waiting";
}

export class GraphView {
  /** container: the element; onStep(stepId|null): a step was clicked. */
  constructor(container, onStep) {
    this.container = container;
    this.onStep = onStep;
    this.graph = { nodes: [], edges: [] };
    this.states = {};
    this.collapsed = new Set();
    this.showPorts = true;
    this.showInternal = false;
    this.cy = null;
    this.selected = null;
    container.sfGraph = this; // for the browser tests: where a node is drawn (cy.$id(id).renderedPosition())
  }

  /** Set the graph (from /api/runs/{run}/graph); big graphs start without ports, subworkflows collapsed. */
  setGraph(graph) {
    this.graph = graph;
    const steps = graph.nodes.filter((n) => n.kind === "step" && !isInternal(n)).length;
    this.showPorts = graph.nodes.filter((n) => !isInternal(n)).length <= 60;
    if (steps > 60) graph.nodes.filter((n) => n.kind === "workflow").forEach((n) => this.collapsed.add(n.id));
    this.rebuild();
  }

  /** Step rows ({id, state, jobs}) changed: recolour without a new layout. */
  setStates(stepRows) {
    for (const row of stepRows) this.states[row.id] = row;
    if (!this.cy) return;
    this.cy.batch(() => {
      this.cy.nodes().forEach((node) => this.paint(node));
    });
  }

  /** Where a node is drawn: itself, or the outermost collapsed workflow around it. */
  visible(id) {
    const byId = this.byId;
    let shown = id;
    for (let node = byId.get(id); node && node.parent; node = byId.get(node.parent)) {
      if (this.collapsed.has(node.parent)) shown = node.parent;
    }
    return shown;
  }

  stepsInside(workflowId) {
    const inside = [];
    for (const node of this.graph.nodes) {
      if (node.kind !== "step" || isInternal(node)) continue;
      for (let p = node.parent; p; p = (this.byId.get(p) || {}).parent) {
        if (p === workflowId) { inside.push(node.step || node.id); break; }
      }
    }
    return inside;
  }

  paint(node) {
    const kind = node.data("kind");
    let state = null;
    if (kind === "step") {
      const row = this.states[node.data("step")];
      state = row ? row.state : "waiting";
      const jobs = row ? row.jobs || {} : {};
      const total = (jobs.completed || 0) + (jobs.failed || 0) + (jobs.running || 0) + (jobs.waiting || 0);
      const label = total > 1 ? `${node.data("base")}  ${jobs.completed || 0}/${total}` : node.data("base");
      node.data("label", label);
      node.data("w", 24 + 6.6 * label.length);
      node.data("failed", state === "failed");
    } else if (kind === "workflow" && node.data("collapsed")) {
      state = combined(this.stepsInside(node.id()).map((s) => (this.states[s] || {}).state || "waiting"));
    } else {
      return;
    }
    node.data("state", state);
    node.data("fill", STATE_COLOURS[state] || STATE_COLOURS.waiting);
    node.data("ink", state === "waiting" || state === "skipped" ? "#1f2328" : "#ffffff");
  }

  elements() {
    this.byId = new Map(this.graph.nodes.map((n) => [n.id, n]));
    const nodes = [];
    // Without internal steps, the ports next to one are passed through too (a scatter joins
    // its inputs to its outputs in a way the graph does not say: drawing it as a cross product
    // would mislead), and a scatter's size port (scatter -> gather) is dropped.
    const nextToInternal = new Map();
    const sizePort = new Map();
    const kindOf = (id) => { const node = this.byId.get(id); return node && isInternal(node) ? node.step_kind : null; };
    for (const e of this.graph.edges) {
      for (const [port, other, into] of [[e.target, e.source, true], [e.source, e.target, false]]) {
        if ((this.byId.get(port) || {}).kind !== "port") continue;
        const kind = kindOf(other);
        nextToInternal.set(port, (nextToInternal.get(port) ?? false) || kind !== null);
        sizePort.set(port, (sizePort.get(port) ?? true) && kind === (into ? "scatter" : "gather"));
      }
    }
    const dropped = (n) => !this.showInternal && n.kind === "port" && !!sizePort.get(n.id);
    const hidden = (n) => dropped(n) || (n.kind === "port" && (!this.showPorts || (!this.showInternal && nextToInternal.get(n.id))))
      || (!this.showInternal && isInternal(n));
    for (const n of this.graph.nodes) {
      if (this.visible(n.id) !== n.id || hidden(n)) continue;
      const parent = n.parent && this.visible(n.parent) === n.parent && !this.collapsed.has(n.parent) ? n.parent : undefined;
      nodes.push({ data: {
        id: n.id, parent, kind: n.kind, step: n.step || null, base: n.label,
        label: this.collapsed.has(n.id) ? `${n.label} ▸ ${this.stepsInside(n.id).length} steps` : n.label,
        collapsed: this.collapsed.has(n.id), title: n.name || n.label,
        fill: STATE_COLOURS.waiting, ink: "#1f2328", w: 24 + 6.6 * String(n.label).length + (this.collapsed.has(n.id) ? 60 : 0),
      } });
    }
    // Edges between what is visible: a hidden port or internal step is passed through
    // (step -> port -> step becomes step -> step), inside a collapsed box goes to the box.
    const pairs = new Set();
    const edges = [];
    const add = (s, t) => {
      if (s === t || pairs.has(`${s}\u0000${t}`)) return;
      pairs.add(`${s}\u0000${t}`);
      edges.push({ data: { id: `e${edges.length}`, source: s, target: t } });
    };
    const out = new Map();
    for (const e of this.graph.edges) (out.get(e.source) || out.set(e.source, []).get(e.source)).push(e.target);
    for (const n of this.graph.nodes) {
      if (hidden(n) || !out.has(n.id)) continue;
      const seen = new Set();
      const stack = [...out.get(n.id)];
      while (stack.length) {
        const target = stack.pop();
        if (seen.has(target)) continue;
        seen.add(target);
        const node = this.byId.get(target);
        if (node && dropped(node)) continue;
        if (node && hidden(node)) stack.push(...(out.get(target) || []));
        else add(this.visible(n.id), this.visible(target));
      }
    }
    return { nodes, edges };
  }

  rebuild() {
    if (!cytoscape) {
      this.container.textContent = "The graph library did not load.";
      return;
    }
    const elements = this.elements();
    if (this.cy) this.cy.destroy();
    this.cy = cytoscape({
      container: this.container, elements, style: STYLE,
      minZoom: 0.1, maxZoom: 3, boxSelectionEnabled: false, autoungrabify: true,
    });
    this.cy.batch(() => this.cy.nodes().forEach((node) => this.paint(node)));
    this.cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 18, rankSep: 45, padding: 12, animate: false }).run();
    this.fitHeight();
    this.fit();
    this.cy.on("tap", "node", (event) => {
      const node = event.target;
      const kind = node.data("kind");
      if (kind === "workflow") { this.toggle(node.id()); return; }
      if (kind !== "step") return;
      const step = node.data("step");
      this.select(this.selected === step ? null : step);
      this.onStep(this.selected);
    });
    this.container.setAttribute("data-nodes", String(elements.nodes.length));
    this.container.setAttribute("data-collapsed", [...this.collapsed].join(" "));
    if (this.selected) this.select(this.selected);
    if (this.onLayout) this.onLayout();
  }

  /** Size the box to the laid-out graph (between 140 and 520 px high): a small graph does not
   *  float in an empty box, a tall one gets room before it has to be zoomed out. */
  fitHeight() {
    const bb = this.cy.elements().boundingBox();
    const width = this.container.clientWidth || 800;
    const zoom = Math.min(1.2, (width - 28) / Math.max(1, bb.w));
    const height = Math.round(Math.min(520, Math.max(140, bb.h * zoom + 40)));
    if (Math.abs(height - this.container.clientHeight) > 2) {
      this.container.style.height = `${height}px`;
      this.cy.resize();
    }
  }

  /** Fit the graph in view, never zoomed in beyond 1.2 (a tiny graph stays readable size). */
  fit() {
    if (!this.cy) return;
    this.cy.fit(undefined, 14);
    if (this.cy.zoom() > 1.2) { this.cy.zoom(1.2); this.cy.center(); }
  }

  select(step) {
    this.selected = step;
    if (!this.cy) return;
    this.cy.nodes().removeClass("selected");
    if (step) this.cy.nodes().filter((n) => n.data("step") === step).addClass("selected");
  }

  toggle(workflowId) {
    if (this.collapsed.has(workflowId)) this.collapsed.delete(workflowId);
    else this.collapsed.add(workflowId);
    this.rebuild();
  }

  setShowPorts(show) {
    this.showPorts = show;
    this.rebuild();
  }

  /** Show the steps the translation adds (scatter, gather, valueFrom, transforms). */
  setShowInternal(show) {
    this.showInternal = show;
    this.rebuild();
  }

  /** The subworkflow boxes: [{id, label, collapsed}] (outermost first). */
  workflows() {
    return this.graph.nodes.filter((n) => n.kind === "workflow")
      .map((n) => ({ id: n.id, label: n.label, collapsed: this.collapsed.has(n.id) }));
  }

  /** Expand or collapse every subworkflow. */
  setAllCollapsed(collapse) {
    this.collapsed.clear();
    if (collapse) this.graph.nodes.filter((n) => n.kind === "workflow").forEach((n) => this.collapsed.add(n.id));
    this.rebuild();
  }

  destroy() {
    if (this.cy) this.cy.destroy();
    this.cy = null;
  }
}
