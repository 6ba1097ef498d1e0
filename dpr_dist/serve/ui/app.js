// Clinician review page of the DPR service (docs/ui.md).
// Talks only to the same service (relative URLs); keeps nothing in browser storage.
"use strict";

const ui = { vocab: null, examples: [], labSelects: [] };
const TYPES = { synergism: "synergism", antagonism: "antagonism" };
const LEVELS = { high: "high", low: "low", abnormal: "abnormal" };

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
const fmt = (x, d = 3) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(d));
const pairKey = (a, b) => `${a}\u0000${b}`;

async function call(path, body) {
  const init = { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    Object.assign(init, { method: "POST", body: JSON.stringify(body) });
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, init);
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (!resp.ok) {
    const err = new Error((data && data.message) || `the service answered HTTP ${resp.status}`);
    err.fields = (data && data.fields) || [];
    throw err;
  }
  return data;
}

// ------------------------------------------------------------------ patient panel
function buildForm(vocab) {
  const gender = $("gender");
  for (const g of vocab.genders) gender.append(el("option", { value: g }, g.toUpperCase()));
  if (vocab.genders.length) gender.value = vocab.genders[0];
  for (const i of vocab.insurance) $("insurance-list").append(el("option", { value: i }));
  const grid = $("lab-grid");
  ui.labSelects = vocab.labs.map((lab, i) => {
    const id = `lab-${i}`;
    const select = el("select", { id, "data-lab": lab.name },
      el("option", { value: "" }, "not abnormal"),
      lab.levels.filter((l) => LEVELS[l]).map((l) => el("option", { value: l }, l)));
    grid.append(el("div", { class: "lab" }, el("label", { for: id }, lab.name), select));
    return select;
  });
}

function levelOf(lab) {  // the rule of dpr_dist.data.documents.lab_levels
  const flag = lab.flag ? String(lab.flag).toLowerCase() : null;
  if (flag === "normal" || flag === "high" || flag === "low") return flag;
  const lo = lab.ref_low, hi = lab.ref_high, v = lab.value;
  if (lo !== null && lo !== undefined || hi !== null && hi !== undefined) {
    if (hi !== null && hi !== undefined && v > hi) return "high";
    if (lo !== null && lo !== undefined && v < lo) return "low";
    return "normal";
  }
  return flag === "abnormal" ? "abnormal" : null;
}

function loadExample() {
  const ex = ui.examples[Number($("example").value)];
  if (!ex) { $("example").focus(); return; }
  const p = ex.patient;
  $("record_id").value = p.record_id;
  $("patient_id").value = p.patient_id;
  $("age").value = p.age;
  const g = String(p.gender).toLowerCase();
  $("gender").value = [...$("gender").options].some((o) => o.value === g) ? g : "unknown";
  $("insurance").value = p.insurance || "";
  $("surgery").value = p.surgery === null || p.surgery === undefined ? "" : (p.surgery ? "yes" : "no");
  const levels = new Map();
  for (const lab of p.labs || []) {
    levels.set(String(lab.name).toLowerCase().replace(/[\s:_]+/g, " ").trim(), levelOf(lab));
  }
  for (const s of ui.labSelects) {
    const lv = levels.get(s.dataset.lab);
    s.value = [...s.options].some((o) => o.value === lv) ? lv : "";
  }
  $("note").value = p.note || "";
  $("rx-drugs").value = (ex.prescription || []).join("\n");
  $("rec-status").textContent = `Loaded ${ex.label}. Press Recommend.`;
}

function patient() {
  const ageText = $("age").value.trim();
  const surgery = $("surgery").value;
  return {
    record_id: $("record_id").value.trim(), patient_id: $("patient_id").value.trim(),
    gender: $("gender").value, age: ageText === "" ? null : Number(ageText),
    insurance: $("insurance").value.trim() || null, surgery: surgery === "" ? null : surgery === "yes",
    labs: ui.labSelects.filter((s) => s.value).map((s) => ({ name: s.dataset.lab, flag: s.value })),
    note: $("note").value.trim() || null,
  };
}

function showError(target, err) {
  for (const n of document.querySelectorAll("[aria-invalid]")) n.removeAttribute("aria-invalid");
  for (const f of err.fields || []) {
    const input = $(String(f.field).replace(/^patient\./, "").split(/[.[]/)[0]);
    if (input) input.setAttribute("aria-invalid", "true");
  }
  target.textContent = `Could not answer: ${err.message}`;
  target.hidden = false;
  target.focus();
}

// ------------------------------------------------------------------ package view
function weightOf(it) {
  if (it.contextual_impact_factor !== null && it.contextual_impact_factor !== undefined) {
    const c = it.contextual_impact_factor;
    return { w: Math.abs(c), label: `contextual impact factor ${fmt(c)}` };
  }
  const p = it.type_probabilities_personalized;
  if (p && TYPES[it.type]) return { w: p[it.type], label: `personalized ${it.type} probability ${fmt(p[it.type])}` };
  return { w: null, label: "" };
}

function edgesOf(expl, graphEdges) {
  const labelled = new Map(expl.interactions.map((it) => [pairKey(it.drug_1, it.drug_2), it]));
  const why = (e) => (e.type === "none" ? "Labelled: no interaction."
    : "No labelled interaction; linked because the pair is often prescribed together.");
  const out = graphEdges.map((e) => labelled.get(pairKey(e.drug_1, e.drug_2))
    || { ...e, type: TYPES[e.type] ? e.type : "unknown", description: why(e) });
  const seen = new Set(graphEdges.map((e) => pairKey(e.drug_1, e.drug_2)));
  for (const it of expl.interactions) if (!seen.has(pairKey(it.drug_1, it.drug_2))) out.push(it);
  return out;
}

function drawGraph(figure, drugs, edges, idPrefix) {
  const width = 640, r = 16;
  const nodes = drugs.map((d) => ({ id: d }));
  const links = edges.map((e) => ({ source: e.drug_1, target: e.drug_2, e }));
  const anta = new Set(edges.filter((e) => e.type === "antagonism").flatMap((e) => [e.drug_1, e.drug_2]));
  const sim = d3.forceSimulation(nodes)
    .force("link", d3.forceLink(links).id((d) => d.id).distance(150).strength(0.2))
    .force("charge", d3.forceManyBody().strength(-700))
    .force("collide", d3.forceCollide(70))
    .force("x", d3.forceX(0).strength(0.06)).force("y", d3.forceY(0).strength(0.1)).stop();
  for (let i = 0; i < 300; i += 1) sim.tick();
  const xs = nodes.map((n) => n.x), ys = nodes.map((n) => n.y);
  const x0 = Math.min(...xs) - 110, y0 = Math.min(...ys) - 40;
  const w = Math.max(Math.max(...xs) + 110 - x0, 320), h = Math.max(...ys) + 60 - y0;
  const svg = d3.select(figure).append("svg")
    .attr("viewBox", `${x0} ${y0} ${w} ${h}`).attr("width", "100%").attr("role", "group")
    .attr("aria-label", `Package graph: ${drugs.length} drugs, ${edges.length} links`)
    .style("max-width", `${Math.min(Math.max(w, 320), width * 1.5)}px`);
  const defs = svg.append("defs");
  for (const t of ["synergism", "antagonism", "unknown"]) {
    defs.append("marker").attr("id", `${idPrefix}-arrow-${t}`).attr("viewBox", "0 -5 10 10").attr("refX", 9)
      .attr("markerWidth", 6).attr("markerHeight", 6).attr("orient", "auto").attr("markerUnits", "userSpaceOnUse")
      .append("path").attr("d", "M0,-5L10,0L0,5").attr("class", `arrow ${t}`);
  }
  const path = (l) => {
    const sx = l.source.x, sy = l.source.y, tx = l.target.x, ty = l.target.y;
    const dx = tx - sx, dy = ty - sy, len = Math.hypot(dx, dy) || 1;
    const cx = (sx + tx) / 2 - (dy / len) * 22, cy = (sy + ty) / 2 + (dx / len) * 22;
    const ex = tx - cx, ey = ty - cy, el2 = Math.hypot(ex, ey) || 1;
    return `M${sx},${sy} Q${cx},${cy} ${tx - (ex / el2) * (r + 3)},${ty - (ey / el2) * (r + 3)}`;
  };
  svg.append("g").attr("class", "links").selectAll("path").data(links).join("path")
    .attr("class", (l) => `link ${l.e.type}`).attr("d", path).attr("fill", "none")
    .attr("stroke-width", (l) => { const { w: v } = weightOf(l.e); return v === null ? 2 : 1 + 7 * v; })
    .attr("marker-end", (l) => `url(#${idPrefix}-arrow-${l.e.type === "unknown" ? "unknown" : l.e.type})`)
    .append("title")
    .text((l) => `${l.e.drug_1} \u2192 ${l.e.drug_2}: ${l.e.type}. ${l.e.description} ${weightOf(l.e).label}`);
  const node = svg.append("g").attr("class", "nodes").selectAll("g").data(nodes).join("g")
    .attr("class", (n) => `node${anta.has(n.id) ? " in-antagonism" : ""}`).attr("tabindex", 0)
    .attr("transform", (n) => `translate(${n.x},${n.y})`)
    .attr("aria-label", (n) => {
      const mine = edges.filter((e) => e.drug_1 === n.id || e.drug_2 === n.id);
      const text = mine.map((e) => `${e.type} ${e.drug_1} to ${e.drug_2}`).join("; ");
      return `${n.id}: ${text || "no links"}`;
    });
  node.append("circle").attr("r", r);
  node.append("text").attr("class", "label").attr("y", r + 18).attr("text-anchor", "middle").text((n) => n.id);
}

function legend(interactions) {  // the factor the model gives (none for GNN and the package baselines)
  const has = (f) => interactions.some((it) => it[f] !== null && it[f] !== undefined);
  const width = has("contextual_impact_factor") ? "the size of the contextual impact factor (DPR-WG)"
    : has("type_probabilities_personalized") ? "the personalized probability of the labelled type (DPR-AG)"
      : "the same for all links (no labelled pair, or a model without edge factors)";
  return el("div", { class: "legend" },
    el("span", { class: "key synergism" }, "synergism"), el("span", { class: "key antagonism" }, "antagonism"),
    el("span", { class: "key unknown" }, "unknown / no interaction"),
    el("span", {}, `Arrows point from the drug that acts to the drug acted on; line width is ${width}.`));
}

async function renderPackage(container, expl, idPrefix) {
  container.replaceChildren();
  const warn = el("div", { class: "warnings", id: `${idPrefix}-warnings` });
  if (expl.warnings.length) {
    warn.setAttribute("role", "alert");
    warn.append(el("h4", {}, `Antagonism warnings (${expl.warnings.length})`),
      el("ul", {}, expl.warnings.map((w) => el("li", { class: "warning" },
        el("strong", {}, `${w.drug_1} + ${w.drug_2}: `), w.description, " ", el("em", {}, w.message)))));
  } else {
    warn.append(el("p", { class: "ok" }, "No antagonistic pair in this package."));
  }
  const { edges: graphEdges } = await call("graph", { drugs: expl.drugs });
  const edges = edgesOf(expl, graphEdges);
  const figure = el("figure", { class: "graph", id: `${idPrefix}-graph` });
  const labelled = edges.filter((e) => TYPES[e.type]);
  const others = edges.filter((e) => !TYPES[e.type]);
  const table = (caption, list) => el("table", { class: "interactions" }, el("caption", {}, caption),
    el("thead", {}, el("tr", {}, ["Drug acting", "Drug acted on", "Type", "Factor", "Description"]
      .map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, list.map((e) => el("tr", { class: e.type },
      el("td", {}, e.drug_1), el("td", {}, e.drug_2), el("td", {}, e.type),
      el("td", {}, weightOf(e).label || (e.co_occurrence !== undefined ? `co-occurrence ${fmt(e.co_occurrence)}` : "")),
      el("td", {}, e.description)))));
  const parts = [warn, figure, legend(expl.interactions), labelled.length
    ? el("div", { class: "table-wrap" }, table(`Labelled interactions (${labelled.length})`, labelled))
    : el("p", {}, "No labelled interaction between these drugs.")];
  if (others.length) {
    parts.push(el("details", { class: "others" },
      el("summary", {},
        `${others.length} further link(s) without a labelled interaction (drugs often prescribed together)`),
      el("div", { class: "table-wrap" }, table("Links without a labelled interaction", others))));
  }
  container.append(...parts, el("p", { class: "how" }, expl.how_to_read));
  drawGraph(figure, expl.drugs, edges, idPrefix);
}

// ------------------------------------------------------------------ recommendation panel
async function recommend(kind) {
  const error = $("patient-error");
  error.hidden = true;
  const status = $("rec-status");
  const buttons = [$("recommend"), $("generate")];
  buttons.forEach((b) => { b.disabled = true; });
  status.textContent = kind === "generate" ? "Generating packages\u2026" : "Recommending\u2026";
  try {
    const topK = Number($("top_k").value) || 5;
    const resp = await call(`../v1/${kind}`, { patient: patient(), top_k: topK });
    if (!resp.packages.length) {
      status.textContent = "No candidate package for this patient.";
      $("rec-result").hidden = true;
      return;
    }
    const best = resp.packages[0];
    // with serve.rank_by = expected_f1 the packages come ordered by expected F1, and carry it
    const scoreText = (p) => `${fmt(p.score)}`
      + (p.expected_f1 !== null && p.expected_f1 !== undefined ? ` (expected F1 ${fmt(p.expected_f1, 3)})` : "");
    $("rec-title").textContent = `${kind === "generate" ? "Best generated package" : "Recommended package"}: `
      + `score ${scoreText(best)} (${resp.model}, version ${resp.model_version})`;
    await renderPackage($("rec-package"), resp.explanation, "rec");
    $("cands-info").textContent = `${resp.packages.length} best of ${resp.candidates} packages compared`
      + (kind === "generate" ? " (s2, s3: made by the generation heuristic)." : " (packages of similar patients).");
    const source = (p) => p.origin
      + (p.similarity !== null && p.similarity !== undefined ? ` (similarity ${fmt(p.similarity, 2)})` : "")
      + (p.rules.length ? `: ${p.rules.map((x) => `${x.rule} ${x.drug}${x.partner ? ` / ${x.partner}` : ""}`)
        .join("; ")}` : "");
    $("rec-candidates").tBodies[0].replaceChildren(...resp.packages.map((p) => el("tr", {},
      el("td", {}, p.rank), el("td", {}, p.drugs.join(", ")), el("td", {}, scoreText(p)), el("td", {}, source(p)),
      el("td", {}, el("button", { type: "button", class: "show", "data-rank": p.rank }, `Show #${p.rank}`)))));
    for (const b of document.querySelectorAll("#rec-candidates button.show")) {
      const pkg = resp.packages[Number(b.dataset.rank) - 1];
      b.addEventListener("click", () => showCandidate(pkg));
    }
    $("rec-result").hidden = false;
    status.textContent = `Done: ${resp.packages.length} package(s).`;
    $("recommendation").focus();
  } catch (err) {
    status.textContent = "No recommendation.";
    showError(error, err);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

async function showCandidate(pkg) {
  const status = $("rec-status");
  status.textContent = `Explaining package #${pkg.rank}\u2026`;
  try {
    const resp = await call("../v1/score", { patient: patient(), drugs: pkg.drugs });
    $("rec-title").textContent = `Package #${pkg.rank} (${pkg.origin}): score ${fmt(resp.score)}, rank ${resp.rank}`;
    await renderPackage($("rec-package"), resp.explanation, "rec");
    status.textContent = `Showing package #${pkg.rank}.`;
    $("rec-title").scrollIntoView();
  } catch (err) {
    showError($("patient-error"), err);
  }
}

// ------------------------------------------------------------------ prescription panel
async function checkPrescription() {
  const status = $("rx-status");
  const names = $("rx-drugs").value.split(/[\n,;]+/).map((s) => s.trim()).filter(Boolean);
  if (!names.length) { status.textContent = "Type at least one drug."; $("rx-drugs").focus(); return; }
  $("rx-check").disabled = true;
  status.textContent = "Checking\u2026";
  try {
    const { drugs: read } = await call("resolve", { drugs: names });
    $("rx-names").replaceChildren(...read.map((d) => (d.drug
      ? el("li", { class: "known" }, el("span", { class: "mark", "aria-hidden": "true" }, "\u2713 "), `${d.input}`,
        d.input !== d.drug ? ` \u2192 ${d.drug}` : "")
      : el("li", { class: "unknown" }, el("span", { class: "mark", "aria-hidden": "true" }, "\u2717 "),
        el("strong", {}, `${d.input}: unknown`), ` (${d.message}); left out of the check`))));
    $("rx-result").hidden = false;
    const known = read.filter((d) => d.drug).map((d) => d.input);
    if (!known.length) {
      $("rx-score").replaceChildren(el("p", {}, "None of these names is in the model's drug vocabulary."));
      $("rx-package").replaceChildren();
      status.textContent = "No known drug.";
      return;
    }
    const resp = await call("../v1/score", { patient: patient(), drugs: known });
    const best = resp.best_candidate;
    $("rx-score").replaceChildren(
      el("p", { class: "score" }, `Score ${fmt(resp.score)}: rank ${resp.rank} against `
        + `${resp.candidates} candidate packages (1 = no candidate scores higher).`),
      best ? el("p", {}, `Best candidate (score ${fmt(best.score)}): ${best.drugs.join(", ")}.`) : "");
    await renderPackage($("rx-package"), resp.explanation, "rx");
    const unknown = read.length - known.length;
    status.textContent = `Checked ${resp.drugs.length} drug(s)` + (unknown ? `; ${unknown} unknown name(s).` : ".")
      + ` ${resp.explanation.warnings.length} antagonism warning(s).`;
  } catch (err) {
    status.textContent = "The check failed.";
    showError($("patient-error"), err);
  } finally {
    $("rx-check").disabled = false;
  }
}

// ------------------------------------------------------------------ start
async function start() {
  $("patient-form").addEventListener("submit", (ev) => { ev.preventDefault(); recommend("recommend"); });
  $("generate").addEventListener("click", () => recommend("generate"));
  $("rx-form").addEventListener("submit", (ev) => { ev.preventDefault(); checkPrescription(); });
  $("load-example").addEventListener("click", loadExample);
  try {
    ui.vocab = await call("vocabulary");
    buildForm(ui.vocab);
    $("model-line").textContent = `Model ${ui.vocab.model} (version ${ui.vocab.model_version}), `
      + `${ui.vocab.drugs.length} drugs, ${ui.vocab.labs.length} lab tests.`;
  } catch (err) {
    $("model-line").textContent = `The model is not available: ${err.message}`;
  }
  try {
    ui.examples = (await call("static/examples.json")).examples;
    ui.examples.forEach((ex, i) => $("example").append(el("option", { value: i }, ex.label)));
  } catch (err) {
    $("example").disabled = true;
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
