// @ts-check
/**
 * The layer × head explorer of one token: every layer's and head's attention to the
 * chosen image as a small map, with its image_mass and entropy, in layer order or sorted
 * by either; clicking a head shows it over the X-ray beside the grid.
 *
 * Owns this view and its choices (sort, picked head). Results come from a `heads` job.
 */

import { analyze, findJob, isWaiting } from "./analysis.js";
import { jobBar, selectField } from "./job-bar.js";
import { displayValues } from "../draw/contrast.js";
import { pct } from "../format.js";
import { drawHeatmap } from "../draw/heatmap.js";

/** @typedef {import("./analysis-views.js").ViewCtx} ViewCtx @typedef {import("../wire/analysis-protocol.js").HeadsResult} HeadsResult */

const SORTS = /** @type {[string, string][]} */ ([
  ["layer", "Layer order"], ["mass-desc", "Image mass, high first"], ["mass-asc", "Image mass, low first"],
  ["entropy-asc", "Entropy, focused first"], ["entropy-desc", "Entropy, diffuse first"],
]);

const ui = { sort: "layer", picked: -1, pickedFor: "", key: "" };

/**
 * Head cells in display order: indexes into the (layer, head) raster.
 * @param {HeadsResult} r @param {string} sort
 */
export function headOrder(r, sort) {
  const order = Array.from({ length: r.layers * r.heads }, (_, k) => k);
  const [by, dir] = sort.split("-");
  if (by === "layer") return order;
  const values = by === "mass" ? r.mass : r.entropy;
  return order.sort((a, b) => (dir === "asc" ? values[a] - values[b] : values[b] - values[a]));
}

/** @param {HTMLElement} el @param {ViewCtx} c */
export function renderHeads(el, c) {
  const job = findJob(c.s.jobs, "heads", c.step.i);
  const asked = isWaiting("heads", c.step.i);
  const key = `${c.step.i}|${c.image}|${job?.job}|${job?.status}|${asked}|${ui.sort}|${ui.picked}|${c.s.view.palette}|${c.s.view.contrast}|${c.s.view.opacity}`;
  if (key === ui.key && el.childElementCount) return;
  if (ui.pickedFor !== `${c.s.start?.session}|${c.step.i}|${c.image}`) ui.picked = -1;
  ui.key = key;
  const run = () => analyze({ kind: "heads", index: c.step.i });
  const bar = jobBar("Compute layers × heads", job?.status === "done" ? null : job, asked, run, "heads");
  bar.prepend(selectField("Sort", SORTS, ui.sort, (v) => { ui.sort = v; ui.key = ""; renderHeads(el, c); }));
  const result = job?.status === "done" ? /** @type {HeadsResult} */ (job.result) : null;
  if (!result) {
    const hint = document.createElement("p");
    hint.className = "hint";
    hint.textContent = "Every layer's and head's attention from this token to the image, computed on request.";
    el.replaceChildren(bar, hint);
    return;
  }
  bar.querySelector(".run")?.remove();
  const n = result.maps.length / (result.layers * result.heads);
  const split = document.createElement("div");
  split.className = "head-split";
  split.append(headGrid(el, c, result, n), headFocus(c, result, n));
  el.replaceChildren(bar, split);
}

/**
 * @param {HTMLElement} el @param {ViewCtx} c @param {HeadsResult} r @param {number} n images per head
 */
function headGrid(el, c, r, n) {
  const grid = document.createElement("div");
  grid.className = "head-grid";
  grid.style.gridTemplateColumns = `repeat(${Math.min(r.heads, 8)}, minmax(0, 1fr))`;
  grid.dataset.cells = String(r.layers * r.heads);
  const aspect = c.xray.height / c.xray.width;
  for (const k of headOrder(r, ui.sort)) {
    const layer = Math.floor(k / r.heads);
    const head = k % r.heads;
    const cell = document.createElement("button");
    cell.className = k === ui.picked ? "cell picked" : "cell";
    cell.dataset.k = String(k);
    cell.title = `Layer ${layer}, head ${head}: image mass ${pct(r.mass[k], 1)}, entropy ${r.entropy[k].toFixed(3)}`;
    const canvas = document.createElement("canvas");
    canvas.width = 72;
    canvas.height = Math.round(72 * aspect);
    const map = r.maps[k * n + Math.min(c.image, n - 1)];
    drawHeatmap(canvas, displayValues(map, c.s.view.contrast), c.grid, c.table);
    const cap = document.createElement("span");
    cap.textContent = `L${layer} H${head} · ${pct(r.mass[k])} · ${r.entropy[k].toFixed(2)}`;
    cell.append(canvas, cap);
    cell.addEventListener("click", () => {
      ui.picked = k;
      ui.pickedFor = `${c.s.start?.session}|${c.step.i}|${c.image}`;
      ui.key = "";
      renderHeads(el, c);
    });
    grid.append(cell);
  }
  return grid;
}

/** @param {ViewCtx} c @param {HeadsResult} r @param {number} n */
function headFocus(c, r, n) {
  const box = document.createElement("figure");
  box.className = "tile head-focus";
  const cap = document.createElement("figcaption");
  const canvas = document.createElement("canvas");
  canvas.width = 480;
  canvas.height = Math.round(480 * (c.xray.height / c.xray.width));
  canvas.id = "head-focus";
  if (ui.picked < 0) {
    cap.textContent = "Click a head to see it over the X-ray";
    canvas.getContext("2d")?.drawImage(c.xray, 0, 0, canvas.width, canvas.height);
  } else {
    const k = ui.picked;
    cap.textContent = `Layer ${Math.floor(k / r.heads)}, head ${k % r.heads} · image mass ${pct(r.mass[k], 1)} · entropy ${r.entropy[k].toFixed(3)}`;
    const map = r.maps[k * n + Math.min(c.image, n - 1)];
    drawHeatmap(canvas, displayValues(map, c.s.view.contrast), c.grid, c.table, c.xray, c.s.view.opacity);
    canvas.dataset.head = String(k);
  }
  box.append(cap, canvas);
  return box;
}
