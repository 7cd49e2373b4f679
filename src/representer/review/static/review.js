// The review page: lists the ranked training points, shows one with its explanation, sends decisions.
// Talks only to its own server (the CSP allows nothing else); every request carries the session token.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const client = Math.random().toString(36).slice(2, 10);  // names this tab in the decision history
const $ = (id) => document.getElementById(id);
const view = { info: null, points: [], pos: -1, detail: null, busy: false, heat: false, picker: [], pickerPos: 0 };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "html") node.innerHTML = v;  // fragments drawn (and escaped) by the server's item renderers
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const headers = { "X-Review-Token": token, ...(options.body ? { "Content-Type": "application/json" } : {}) };
  const response = await fetch(path, { ...options, headers });
  let body;
  try { body = await response.json(); } catch (e) { body = { error: `${response.status} ${response.statusText}` }; }
  if (!response.ok) {
    const error = new Error(body.error || `${response.status}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

function say(text, kind = "") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
}

function labelText(id, name) { return name === String(id) ? name : `${id} · ${name}`; }

function decisionText(d) {
  if (!d) return "undecided";
  if (d.decision === "relabel") return `relabel → ${d.new_class}`;
  return d.decision;
}

function tag(d) { return el("span", { class: `tag ${d ? d.decision : "undecided"}` }, decisionText(d)); }

// ------------------------------------------------------------------ header and queue
function showProgress(p) {
  const done = p.total ? (100 * p.reviewed) / p.total : 0;
  $("progress-bar").style.width = `${done.toFixed(1)}%`;
  $("progress-text").textContent = `${p.reviewed} of ${p.total} reviewed, ${p.relabel} relabelled, ${p.remove} removed, `
    + `${p.keep} kept, ${p.skip} skipped`;
}

function queueRow(point, pos) {
  const button = el("button", { type: "button", "data-pos": String(pos) },
    el("span", { class: "rank" }, `#${point.rank}`),
    el("span", { class: "labels", title: point.item }, `${point.given_class} → ${point.predicted_class}`),
    tag(point.decision));
  button.addEventListener("click", () => open(pos));
  return el("li", { id: `q-${point.train_index}` }, button);
}

function drawQueue() {
  const list = $("queue-list");
  list.replaceChildren(...view.points.map(queueRow));
  $("queue-empty").hidden = view.points.length > 0;
  markCurrent();
}

function markCurrent() {
  for (const li of $("queue-list").children) li.classList.remove("current");
  const point = view.points[view.pos];
  if (!point) return;
  const li = $(`q-${point.train_index}`);
  if (li) { li.classList.add("current"); li.scrollIntoView({ block: "nearest" }); }
}

async function loadPoints(keep) {
  const query = new URLSearchParams({ class: $("filter-class").value, decision: $("filter-decision").value });
  const answer = await api(`/api/points?${query}`);
  view.points = answer.points;
  showProgress(answer.progress);
  drawQueue();
  if (view.points.length === 0) { view.pos = -1; view.detail = null; $("point-body").hidden = true; return; }
  let at = keep === undefined ? -1 : view.points.findIndex((p) => p.train_index === keep);
  if (at < 0) at = Math.max(0, view.points.findIndex((p) => !p.decision));  // else the first undecided point
  await open(at);
}

// ------------------------------------------------------------------ one point
function card(c) {
  const score = `${c.score >= 0 ? "+" : ""}${c.score.toPrecision(3)}`;
  const node = el("div", { class: `card${c.itself ? " itself" : ""}`, title: c.item },
    el("div", { html: c.item_html }),
    el("div", { class: "label" }, labelText(c.label, c.class)),
    el("div", { class: `score ${c.score > 0 ? "pos" : c.score < 0 ? "neg" : ""}` }, `train ${c.train_index}${c.itself ? " (itself)" : ""}`,
      el("br"), `score ${score}`));
  if (c.decision) node.append(el("span", { class: `tag ${c.decision}` }, c.decision));
  return node;
}

function drawExplanations(detail) {
  const blocks = detail.explanations.map((e) => el("div", { class: "explanation-class" },
    el("h3", {}, `Explaining the ${e.role} class ${labelText(e.label, e.class)} (${e.method})`),
    el("div", { class: "group-title exc" }, "Most helpful training points (raise this class)"),
    el("div", { class: "strip" }, ...e.helpful.map(card)),
    el("div", { class: "group-title inh" }, "Most harmful training points (lower it)"),
    el("div", { class: "strip" }, ...e.harmful.map(card))));
  $("explanations").replaceChildren(...blocks);
}

function drawProbabilities(detail) {
  const box = $("point-probabilities");
  box.replaceChildren();
  for (const p of (detail.probabilities || []).slice(0, 5)) {
    const bar = el("span");
    bar.style.width = `${(100 * p.p).toFixed(1)}%`;
    box.append(el("span", { class: p.label === detail.given_label ? "given" : "" }, labelText(p.label, p.class)),
      el("span", { class: "pbar" }, bar), el("span", { class: "num" }, `${(100 * p.p).toFixed(1)} %`));
  }
}

function drawDecision(detail) {
  $("point-decision").replaceChildren(tag(detail.decision));
  for (const b of $("actions").querySelectorAll("button")) {
    const d = detail.decision;
    const chosen = d && ((b.dataset.action === "keep" && d.decision === "keep") || (b.dataset.action === "remove" && d.decision === "remove")
      || (b.dataset.action === "skip" && d.decision === "skip") || (b.dataset.action === "pick" && d.decision === "relabel"));
    b.classList.toggle("chosen", Boolean(chosen));
  }
  $("history").replaceChildren(...detail.history.map((d) => el("li", {}, `${d.decided_at} · ${d.reviewer} · ${decisionText(d)}`)));
}

async function open(pos) {
  if (pos < 0 || pos >= view.points.length) return;
  view.pos = pos;
  closePicker();
  markCurrent();
  const point = view.points[pos];
  history.replaceState(null, "", `#i=${point.train_index}`);
  view.detail = null;  // no decision until this point is on screen
  const detail = await api(`/api/points/${point.train_index}`);
  if (view.points[view.pos] !== point) return;  // the user moved on meanwhile
  view.detail = detail;
  $("point-body").hidden = false;
  $("point-item").replaceChildren(el("div", { html: detail.item_html }));
  $("point-title").textContent = `Rank ${detail.rank} · training point ${detail.train_index} · ${detail.item}`;
  $("point-given").textContent = labelText(detail.given_label, detail.given_class);
  $("point-predicted").textContent = labelText(detail.predicted, detail.predicted_class);
  $("point-score").textContent = `${detail.score.toPrecision(4)} (rank ${detail.rank} of ${view.info.progress.total})`;
  $("accept-class").textContent = detail.predicted_class;
  $("accept-button").disabled = detail.predicted === detail.given_label;
  drawProbabilities(detail);
  drawDecision(detail);
  drawExplanations(detail);
  $("heatmaps").hidden = true;
  if (view.heat) await showHeatmaps();
}

// ------------------------------------------------------------------ deciding
async function decide(decision, newClass = null) {
  const detail = view.detail;
  if (!detail || view.busy) { say("Wait for the point to load, then decide.", "error"); return; }
  const body = { train_index: detail.train_index, decision, new_class: newClass, base: detail.decision ? detail.decision.id : null, client };
  let answer;
  view.busy = true;
  try {
    answer = await api("/api/decisions", { method: "POST", body: JSON.stringify(body) });
  } catch (error) {
    say(`Not saved: ${error.message}`, "error");
    if (error.status === 409) {  // another tab decided this point since: show what it decided
      const fresh = await api(`/api/points/${detail.train_index}`);
      applyDecision(detail.train_index, error.body.current, false);
      if (view.detail === detail) { view.detail = fresh; drawDecision(fresh); }
    }
    return;
  } finally {
    view.busy = false;
  }
  applyDecision(detail.train_index, answer.decision);
  view.info.progress = answer.progress;
  showProgress(answer.progress);
  if (view.pos + 1 < view.points.length) await open(view.pos + 1);
  say(`Saved: training point ${detail.train_index} → ${decisionText(answer.decision)}.`, "ok");
}

function applyDecision(trainIndex, d, redraw = true) {
  const point = view.points.find((p) => p.train_index === trainIndex);
  if (point) {
    point.decision = d;
    const li = $(`q-${point.train_index}`);
    if (li) li.querySelector(".tag").replaceWith(tag(d));
  }
  if (redraw && view.detail) {
    view.detail.decision = d;
    view.detail.history.push(d);
    drawDecision(view.detail);
  }
}

// ------------------------------------------------------------------ the class picker
function openPicker() {
  if (!view.detail) { say("Wait for the point to load, then decide.", "error"); return; }
  $("picker").hidden = false;
  $("picker-input").value = "";
  filterPicker();
  $("picker-input").focus();
}

function closePicker() {
  $("picker").hidden = true;
  if (document.activeElement === $("picker-input")) $("picker-input").blur();
}

function filterPicker() {
  const text = $("picker-input").value.trim().toLowerCase();
  const given = view.detail ? view.detail.given_label : -1;
  view.picker = view.info.classes.map((name, id) => ({ name, id }))
    .filter((c) => c.id !== given && (text === "" || c.name.toLowerCase().includes(text) || String(c.id) === text));
  const exact = view.picker.findIndex((c) => c.name.toLowerCase() === text || String(c.id) === text);
  view.pickerPos = exact >= 0 ? exact : 0;
  drawPicker();
}

function drawPicker() {
  $("picker-list").replaceChildren(...view.picker.map((c, i) => {
    const item = el("li", { class: i === view.pickerPos ? "active" : "" }, labelText(c.id, c.name));
    item.addEventListener("click", () => choose(c));
    return item;
  }));
}

function choose(c) {
  closePicker();
  return decide("relabel", c.name);
}

$("picker-input").addEventListener("input", filterPicker);
$("picker-input").addEventListener("keydown", (event) => {
  if (event.key === "Escape") { event.preventDefault(); closePicker(); }
  else if (event.key === "Enter") { event.preventDefault(); if (view.picker[view.pickerPos]) choose(view.picker[view.pickerPos]); }
  else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    const n = view.picker.length;
    if (n) { view.pickerPos = (view.pickerPos + (event.key === "ArrowDown" ? 1 : n - 1)) % n; drawPicker(); }
  }
  event.stopPropagation();
});

// ------------------------------------------------------------------ heat-maps
async function showHeatmaps() {
  const detail = view.detail;
  const box = $("heatmaps");
  if (!detail) return;
  if (!detail.heatmaps) { say("No heat-maps for this run (they need images, rps-l2 or dualview, and captum).", "error"); return; }
  box.hidden = false;
  box.replaceChildren(el("p", { class: "meta" }, "Computing heat-maps …"));
  const blocks = [];
  for (const e of detail.explanations) {
    const answer = await api(`/api/points/${detail.train_index}/heatmaps?${new URLSearchParams({ class: e.class })}`);
    if (view.detail !== detail) return;
    blocks.push(el("h3", {}, `Where in the images: LRP of each pair score for ${labelText(e.label, e.class)}`),
      el("div", { class: "strip" }, ...answer.pairs.map((p) => el("div", { class: "card pair" },
        el("div", { class: "tiles" },
          el("figure", { class: "tile" }, el("div", { html: p.item_html }), el("figcaption", {}, `train ${p.train_index}`)),
          el("figure", { class: "tile" }, el("img", { class: "thumb heat", src: p.on_point, width: "84", height: "84", alt: "on this point" }), el("figcaption", {}, "on this point")),
          el("figure", { class: "tile" }, el("img", { class: "thumb heat", src: p.on_train, width: "84", height: "84", alt: "on train" }), el("figcaption", {}, "on train"))),
        el("div", { class: `score ${p.score > 0 ? "pos" : "neg"}` }, `score ${p.score.toPrecision(3)}`)))));
  }
  box.replaceChildren(el("p", { class: "caption-note" }, "Red: regions that raise the pair's score, blue: regions that lower it; each map is scaled to its own largest absolute value."), ...blocks);
}

// ------------------------------------------------------------------ keys and start
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) return;
  const detail = view.detail;
  const actions = {
    k: () => decide("keep"),
    a: () => (detail && detail.predicted !== detail.given_label ? decide("relabel", detail.predicted_class) : say("The model predicts the given class; nothing to accept.", "error")),
    r: openPicker,
    x: () => decide("remove"),
    s: () => decide("skip"),
    n: () => open(view.pos + 1), ArrowRight: () => open(view.pos + 1), ArrowDown: () => open(view.pos + 1),
    p: () => open(view.pos - 1), ArrowLeft: () => open(view.pos - 1), ArrowUp: () => open(view.pos - 1),
    h: () => { view.heat = !view.heat; return view.heat ? showHeatmaps() : ($("heatmaps").hidden = true); },
    "?": () => { $("help").hidden = !$("help").hidden; },
    Escape: () => { $("help").hidden = true; closePicker(); },
  };
  const act = actions[event.key];
  if (!act) return;
  event.preventDefault();
  Promise.resolve(act()).catch((error) => say(error.message, "error"));
});

for (const button of $("actions").querySelectorAll("button")) {
  button.addEventListener("click", () => {
    const detail = view.detail;
    const run = { keep: () => decide("keep"), accept: () => decide("relabel", detail.predicted_class), pick: openPicker,
      remove: () => decide("remove"), skip: () => decide("skip") }[button.dataset.action];
    Promise.resolve(run()).catch((error) => say(error.message, "error"));
  });
}
for (const id of ["filter-class", "filter-decision"]) {
  $(id).addEventListener("change", () => {
    const current = view.points[view.pos];
    loadPoints(current ? current.train_index : undefined).catch((error) => say(error.message, "error"));
    $(id).blur();
  });
}

async function start() {
  view.info = await api("/api/state");
  const info = view.info;
  $("run").textContent = info.folder;
  const route = el("span", {}, `Ranked by ${info.route}${info.reason ? `: ${info.reason}` : ""}. Explained with ${info.method}. Reviewer: ${info.reviewer}.`);
  $("route").replaceChildren(route, ...(info.caveat ? [" ", el("span", { class: "caveat" }, `Caveat: ${info.caveat}.`)] : []));
  $("filter-class").append(...info.classes.map((name, id) => el("option", { value: name }, labelText(id, name))));
  const wanted = Number((location.hash.match(/^#i=(\d+)$/) || [])[1]);
  await loadPoints(Number.isInteger(wanted) ? wanted : undefined);
  document.body.dataset.ready = "true";
}

start().catch((error) => say(`Cannot load the review: ${error.message}`, "error"));
