// minicluster dashboard: polls /minicluster/snapshot (a long poll: the server answers when the
// cluster changes, or after at most a second) and redraws. Hand-written, no dependencies.
"use strict";

const state = { version: null, polls: 0, firstSeen: new Map() };
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function replaceRows(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
}

function seconds(value) {
  return value === null || value === undefined ? "-" : `${value.toFixed(1)} s`;
}

function renderOverview(data) {
  const counts = {};
  for (const job of data.jobs) counts[job.status] = (counts[job.status] || 0) + 1;
  const cards = [
    ["TaskExecutors", data.overview.task_executors],
    ["slots", `${data.overview.slots_free} free / ${data.overview.slots_total}`],
    ["jobs running", (counts.RUNNING || 0) + (counts.RESTARTING || 0) + (counts.CREATED || 0)],
    ["finished", counts.FINISHED || 0],
    ["failed", counts.FAILED || 0],
    ["canceled", counts.CANCELED || 0],
    ["fencing rejections", data.rpc ? data.rpc.fencing_rejections : 0],
    ["RPC calls / s", data.rpc ? data.rpc.calls_per_second.toFixed(1) : "0"],
  ];
  document.getElementById("overview").replaceChildren(
    ...cards.map(([label, value]) => el("div", { class: "card" }, el("b", {}, value), label)),
  );
}

function renderLeaders(data) {
  const leaders = [
    ["Dispatcher", data.dispatcher],
    ["ResourceManager", data.resource_manager],
    ...data.job_masters.map((jm) => [`JobMaster of ${jm.name}`, jm]),
  ];
  replaceRows("leaders", leaders.map(([name, leader]) =>
    el("tr", {}, el("td", {}, name), el("td", { class: "mono" }, leader.address || "(none)"),
      el("td", { class: "mono" }, leader.token || "-"))));
}

function renderTaskExecutors(data) {
  replaceRows("task-executors", data.task_executors.map((te) => {
    const slots = te.slots.map((slot) =>
      el("span", { class: `slot ${slot.state}`, title: slot.job_id || "free" },
        `${slot.index}: ${slot.job_name || slot.state.toLowerCase()}`));
    if (te.slots_total !== undefined) slots.push(`${te.slots_total} slots`);
    return el("tr", { "data-te": te.id, "data-state": te.state },
      el("td", { class: "mono" }, te.id), el("td", { class: `state-${te.state}` }, te.state),
      el("td", {}, seconds(te.heartbeat_age)), el("td", {}, ...slots));
  }));
}

function renderJobs(data) {
  replaceRows("jobs", [...data.jobs].reverse().map((job) => {
    if (!state.firstSeen.has(job.job_id)) {
      state.firstSeen.set(job.job_id, { poll: state.polls, delay: data.now_ms - job.start_ms });
    }
    const seen = state.firstSeen.get(job.job_id);
    const tasks = Object.entries(job.task_states).map(([s, n]) => `${n} ${s}`).join(", ");
    return el("tr", {
      "data-job-name": job.name, "data-job-id": job.job_id, "data-status": job.status,
      "data-first-poll": seen.poll, "data-seen-after-ms": seen.delay,
    },
    el("td", {}, job.name), el("td", { class: "mono" }, job.job_id),
    el("td", { class: `state-${job.status}` }, job.status),
    el("td", {}, `${job.tasks_finished}/${job.tasks_total} finished${tasks ? ` (${tasks})` : ""}`),
    el("td", {}, `${job.slots_held} / ${job.slots_required}`), el("td", {}, job.slots_pending),
    el("td", {}, job.restarts));
  }));
}

function renderEvents(data) {
  const shown = data.events.slice(-40).reverse();
  document.getElementById("events").replaceChildren(...shown.map((event) => {
    const who = event.sender ? `${event.sender}${event.receiver ? ` -> ${event.receiver}` : ""}: ` : "";
    const what = event.message || `${event.method || ""} ${event.outcome || ""}`;
    return el("li", { class: event.kind }, `[${event.time.toFixed(3)}] ${event.kind} ${who}${what}`);
  }));
}

function lane(name) {
  if (name.startsWith("taskexecutor-")) return name.slice("taskexecutor-".length);
  if (name.startsWith("jobmaster-")) return `jobmaster ${name.slice(10, 18)}`;
  return name;
}

function renderSequence(data) {
  const messages = data.messages.slice(-24);
  const lanes = [];
  for (const m of messages) {
    for (const name of [lane(m.sender), lane(m.receiver)]) if (!lanes.includes(name)) lanes.push(name);
  }
  const gap = 130, top = 30, step = 22;
  const width = Math.max(1, lanes.length) * gap + 20;
  const height = top + messages.length * step + 20;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "sequence diagram of the latest messages" });
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", markerWidth: 8, markerHeight: 8, refX: 7, refY: 3, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L7,3 L0,6 z", fill: "#2c5fd4" }));
  defs.append(marker);
  root.append(defs);
  const x = (name) => 10 + gap / 2 + lanes.indexOf(name) * gap;
  for (const name of lanes) {
    root.append(svg("text", { x: x(name), y: 16, "text-anchor": "middle" }, name));
    root.append(svg("line", { x1: x(name), y1: 22, x2: x(name), y2: height - 6, stroke: "#d8dce5" }));
  }
  messages.forEach((m, i) => {
    const y = top + i * step + 10;
    const from = x(lane(m.sender)), to = x(lane(m.receiver));
    const bad = m.kind === "fencing" || m.kind === "dropped" || (m.outcome && m.outcome !== "ok");
    const color = bad ? "#b3261e" : "#2c5fd4";
    const group = svg("g", { class: `message ${m.kind}` });
    if (from === to) {
      group.append(svg("path", { d: `M${from},${y} h20 v8 h-18`, fill: "none", stroke: color, "marker-end": "url(#arrow)" }));
    } else {
      group.append(svg("line", { x1: from, y1: y, x2: to + (to > from ? -3 : 3), y2: y, stroke: color,
        "stroke-dasharray": m.kind === "tell" ? "4 3" : "", "marker-end": "url(#arrow)" }));
    }
    group.append(svg("text", { x: (from + to) / 2, y: y - 3, "text-anchor": "middle", fill: color },
      `${m.method || m.kind}${bad && m.outcome ? ` (${m.outcome})` : ""}`));
    root.append(group);
  });
  document.getElementById("sequence").replaceChildren(root);
}

function render(data) {
  renderOverview(data);
  renderLeaders(data);
  renderTaskExecutors(data);
  renderJobs(data);
  renderEvents(data);
  renderSequence(data);
}

async function poll() {
  const query = state.version === null ? "" : `?after=${state.version}`;
  try {
    const response = await fetch(`/minicluster/snapshot${query}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    state.polls += 1;
    state.version = data.version;
    document.body.dataset.polls = state.polls;
    render(data);
    document.getElementById("connection").textContent =
      `cluster time ${data.time.toFixed(1)} s, updated ${new Date(data.now_ms).toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById("connection").textContent = `cluster unreachable (${error.message}); retrying`;
  }
  setTimeout(poll, 1000);
}

poll();
