// @ts-check
/**
 * Faithfulness of one token's map: deletion and insertion curves (Petsiuk et al. 2018)
 * for a chosen method, each beside its random-order baseline, with the areas under them.
 *
 * Owns this view and its choices (method, steps). Deletion masks the most relevant cells
 * first: a faithful map makes the token's probability fall fast (low AUC, below random);
 * insertion reveals them first: it should rise fast (high AUC, above random).
 * Under the token's curves, "Across the report" averages the done results per method, one
 * per token (the session's; in a replay, the recorded ones as playback reaches their
 * tokens, including those `medviz faithfulness` added in batch), and can score every
 * token of a method that has no result and no job under way, one job per token.
 */

import { analyze, findJob, isWaiting, whyUnavailable } from "./analysis.js";
import { methodLabel } from "../format.js";
import { imageName, imagesOf } from "../images.js";
import { jobBar, selectField } from "./job-bar.js";
import { METHODS_ORDER } from "../methods.js";
import { drawPlot } from "../draw/plot.js";

/** @typedef {import("./analysis-views.js").ViewCtx} ViewCtx @typedef {import("../wire/analysis-protocol.js").FaithResult} FaithResult */

const METHODS = [...METHODS_ORDER, "gradient"];
const ui = { method: "", steps: 8, key: "" };

/** @param {HTMLElement} el @param {ViewCtx} c */
export function renderFaithfulness(el, c) {
  const method = ui.method || c.s.view.method;
  const done = findJob(c.s.jobs, "faithfulness", c.step.i, { method, done: true });
  const job = done ?? findJob(c.s.jobs, "faithfulness", c.step.i, { method });
  const asked = isWaiting("faithfulness", c.step.i);
  const report = reportResults(c);
  const key = `${c.step.i}|${method}|${ui.steps}|${job?.job}|${job?.status}|${asked}|${report.done}|${report.open}|${c.s.steps.length}`;
  if (key === ui.key && el.childElementCount) return;
  ui.key = key;
  const rerender = () => { ui.key = ""; renderFaithfulness(el, c); };
  const run = () => analyze({ kind: "faithfulness", index: c.step.i, method, steps: ui.steps });
  const bar = jobBar("Compute curves", done ? null : job, asked, run, "faithfulness");
  bar.prepend(
    selectField("Method", METHODS.map((m) => [m, methodLabel(m)]), method, (v) => { ui.method = v; rerender(); }),
    selectField("Steps", [4, 8, 16, 32].map((n) => [String(n), `${n}`]), String(ui.steps), (v) => { ui.steps = Number(v); rerender(); }),
  );
  const result = done ? /** @type {FaithResult} */ (done.result) : null;
  if (!result) {
    const hint = document.createElement("p");
    hint.className = "hint";
    hint.textContent = "Mask the image cells this map ranks highest (deletion) or reveal them first (insertion), re-run the model, and follow the token's probability. A random order is the baseline.";
    el.replaceChildren(bar, hint);
  } else {
    if (done) bar.querySelector(".run")?.remove();
    el.replaceChildren(bar, plots(result), aucText(result));
  }
  if (imagesOf(c.s.start).length > 1) el.append(studyNote(c));
  el.append(acrossReport(c, method, report));
}

/**
 * Done faithfulness results by method, the latest per token, and how many jobs are under way.
 * @param {ViewCtx} c
 */
function reportResults(c) {
  /** @type {Map<string, Map<number, FaithResult>>} */
  const byMethod = new Map();
  let done = 0;
  let open = 0;
  for (const f of Object.values(c.s.jobs)) {
    if (f.kind !== "faithfulness") continue;
    if (f.status === "queued" || f.status === "running") open += 1;
    if (f.status !== "done" || !f.result || !("deletion" in f.result)) continue;
    const r = /** @type {FaithResult} */ (f.result);
    const tokens = byMethod.get(r.method) ?? new Map();
    tokens.set(f.index, r);
    byMethod.set(r.method, tokens);
    done += 1;
  }
  return { byMethod, done, open };
}

/**
 * The per-method means over the report, and a button that scores the tokens this method lacks.
 * @param {ViewCtx} c @param {string} method @param {ReturnType<typeof reportResults>} report
 */
function acrossReport(c, method, report) {
  const box = document.createElement("section");
  box.className = "faith-report";
  const table = document.createElement("table");
  table.className = "scores";
  table.createCaption().textContent = "Across the report: mean areas over the scored tokens (of any step count)";
  const head = table.createTHead().insertRow();
  for (const t of ["Method", "Tokens", "Deletion (random)", "Insertion (random)", "Deletion beats random"]) {
    head.append(Object.assign(document.createElement("th"), { textContent: t }));
  }
  const body = table.createTBody();
  const mean = (/** @type {number[]} */ xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  for (const m of METHODS.filter((x) => report.byMethod.has(x))) {
    const rs = [.../** @type {Map<number, FaithResult>} */ (report.byMethod.get(m)).values()];
    const row = body.insertRow();
    row.dataset.method = m;
    row.insertCell().textContent = methodLabel(m);
    row.insertCell().textContent = String(rs.length);
    row.insertCell().textContent = `${mean(rs.map((r) => r.deletion.auc)).toFixed(3)} (${mean(rs.map((r) => r.randomDeletion.auc)).toFixed(3)})`;
    row.insertCell().textContent = `${mean(rs.map((r) => r.insertion.auc)).toFixed(3)} (${mean(rs.map((r) => r.randomInsertion.auc)).toFixed(3)})`;
    row.insertCell().textContent = `${rs.filter((r) => r.deletion.auc < r.randomDeletion.auc).length} of ${rs.length}`;
  }
  const tokens = c.s.steps.flatMap((st, i) => (st && !st.special ? [i] : []));
  const underWay = (/** @type {number} */ i) => {
    const newest = findJob(c.s.jobs, "faithfulness", i, { method });
    return isWaiting("faithfulness", i) || newest?.status === "queued" || newest?.status === "running";
  };
  const scored = tokens.filter((i) => report.byMethod.get(method)?.has(i)).length;
  const missing = tokens.filter((i) => !report.byMethod.get(method)?.has(i) && !underWay(i));
  const go = document.createElement("button");
  go.className = "ghost run-all";
  go.textContent = `Score every token · ${methodLabel(method)} · ${ui.steps} steps`;
  go.disabled = missing.length === 0 || whyUnavailable("faithfulness") !== "";
  go.addEventListener("click", () => {
    go.disabled = true;
    for (const i of missing) analyze({ kind: "faithfulness", index: i, method, steps: ui.steps });
  });
  const note = document.createElement("p");
  note.className = "hint";
  note.textContent = `${scored} of ${tokens.length} tokens scored with ${methodLabel(method)}${report.open ? ` · ${report.open} job${report.open === 1 ? "" : "s"} waiting or running` : ""}. ` +
    "Each token re-runs the model for every step of both curves and their random baselines; for a long report, `medviz faithfulness RECORDING` does the same in batch and keeps the results in the recording.";
  box.append(body.rows.length ? table : Object.assign(document.createElement("p"), { className: "hint", textContent: "No token of this session has been scored yet." }), go, note);
  return box;
}

/** @param {ViewCtx} c in a study only the first image's cells are masked */
function studyNote(c) {
  const p = document.createElement("p");
  p.className = "hint";
  p.textContent = `In a study the curves mask the cells of the first image (${imageName(c.s.start, 0)}) and keep the other images as they are.`;
  return p;
}

/** @param {FaithResult} r */
function plots(r) {
  const box = document.createElement("div");
  box.className = "plots";
  for (const [title, curve, random] of /** @type {const} */ ([["Deletion", r.deletion, r.randomDeletion], ["Insertion", r.insertion, r.randomInsertion]])) {
    const canvas = document.createElement("canvas");
    canvas.width = 520;
    canvas.height = 300;
    canvas.className = `plot plot-${title.toLowerCase()}`;
    drawPlot(canvas, {
      title: `${title} · ${methodLabel(r.method)}`, xLabel: title === "Deletion" ? "cells masked, most relevant first" : "cells revealed, most relevant first",
      yLabel: "token probability",
      series: [
        { label: `${methodLabel(r.method)} (AUC ${curve.auc.toFixed(3)})`, xs: curve.fractions, ys: curve.scores, colour: "#3fb6c4" },
        { label: `random (AUC ${random.auc.toFixed(3)})`, xs: random.fractions, ys: random.scores, colour: "#8d9cb0", dashed: true },
      ],
    });
    box.append(canvas);
  }
  return box;
}

/** @param {FaithResult} r */
function aucText(r) {
  const p = document.createElement("p");
  p.className = "auc";
  const del = r.deletion.auc < r.randomDeletion.auc ? "faster than random" : "not faster than random";
  const ins = r.insertion.auc > r.randomInsertion.auc ? "faster than random" : "not faster than random";
  p.textContent = `Deletion AUC ${r.deletion.auc.toFixed(3)} vs random ${r.randomDeletion.auc.toFixed(3)} (lower is more faithful: the probability falls ${del}) · ` +
    `Insertion AUC ${r.insertion.auc.toFixed(3)} vs random ${r.randomInsertion.auc.toFixed(3)} (higher is more faithful: it rises ${ins}).`;
  return p;
}
