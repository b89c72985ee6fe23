// @ts-check
/**
 * Agreement of one token's maps with annotation boxes: draw boxes on the X-ray (drag),
 * type them, or load them from a labels.csv; then the pointing-game hit, the IoU of the
 * top regions and the box coverage of every method for that token.
 *
 * Owns the boxes of each image (pixel coordinates of the image as the session saw it),
 * their editing and this view. Results come from an `agreement` job.
 */

import { analyze, boxesKey, findJob, isWaiting } from "./analysis.js";
import { displayValues } from "../draw/contrast.js";
import { methodLabel, pct } from "../format.js";
import { drawHeatmap } from "../draw/heatmap.js";
import { jobBar } from "./job-bar.js";
import { labelRows, rowsFor } from "./labels-csv.js";
import { METHODS_ORDER } from "../methods.js";

/**
 * @typedef {import("./analysis-views.js").ViewCtx} ViewCtx
 * @typedef {import("../wire/analysis-protocol.js").Box} Box
 * @typedef {import("../wire/analysis-protocol.js").AgreementResult} AgreementResult
 */

/** @type {{boxes: Record<string, Box[]>, key: string, note: string}} boxes by "session|image" */
const ui = { boxes: {}, key: "", note: "" };

/** @param {ViewCtx} c @returns {Box[]} */
function boxesOf(c) {
  return (ui.boxes[`${c.s.start?.session}|${c.image}`] ??= []);
}

/** @param {HTMLElement} el @param {ViewCtx} c */
export function renderAgreement(el, c) {
  const boxes = boxesOf(c);
  const bk = boxesKey(boxes);
  const mine = boxes.length ? findJob(c.s.jobs, "agreement", c.step.i, { boxes: bk }) : null;
  const job = mine ?? (boxes.length ? null : findJob(c.s.jobs, "agreement", c.step.i, { done: true }));
  const asked = isWaiting("agreement", c.step.i);
  const key = `${c.step.i}|${c.image}|${bk}|${job?.job}|${job?.status}|${asked}|${ui.note}|${c.s.view.method}|${c.s.view.palette}`;
  if (key === ui.key && el.childElementCount) return;
  ui.key = key;
  const again = () => { ui.key = ""; renderAgreement(el, c); };
  const run = () => analyze({ kind: "agreement", index: c.step.i, boxes: boxes.map((b) => ({ ...b })) });
  const bar = jobBar("Score agreement", job, asked, run, "agreement");
  /** @type {HTMLButtonElement} */ (bar.querySelector(".run")).disabled ||= boxes.length === 0;
  const split = document.createElement("div");
  split.className = "agree-split";
  const side = document.createElement("div");
  side.className = "box-list";
  side.append(boxEditor(c, boxes, again), loader(c, boxes, again));
  if (job?.status === "done" && job.result) side.append(scoreTable(/** @type {AgreementResult} */ (job.result), !mine));
  split.append(boxCanvas(c, boxes, again), side);
  el.replaceChildren(bar, split);
}

/** @param {ViewCtx} c @param {Box[]} boxes @param {() => void} again */
function boxCanvas(c, boxes, again) {
  const canvas = document.createElement("canvas");
  canvas.className = "agree-canvas";
  canvas.id = "agree-canvas";
  canvas.width = c.xray.width;
  canvas.height = c.xray.height;
  const map = c.block.maps[c.s.view.method] ?? c.block.maps.consensus;
  if (map) drawHeatmap(canvas, displayValues(map, c.s.view.contrast), c.grid, c.table, c.xray, 0.35);
  else canvas.getContext("2d")?.drawImage(c.xray, 0, 0);
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  const lw = Math.max(2, c.xray.width / 300);
  const outline = (/** @type {number[]} */ b, /** @type {string} */ colour, /** @type {string} */ label) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = lw;
    ctx.strokeRect(b[0], b[1], b[2], b[3]);
    ctx.font = `600 ${lw * 7}px system-ui, sans-serif`;
    ctx.fillStyle = colour;
    ctx.textBaseline = "bottom";
    ctx.fillText(label, b[0] + lw, b[1] - lw);
  };
  boxes.forEach((b) => outline(b.xywh, "#ffd666", b.label));
  /** @type {[number, number] | null} */ let from = null;
  const at = (/** @type {MouseEvent} */ ev) => {
    const r = canvas.getBoundingClientRect();
    return /** @type {[number, number]} */ ([(ev.clientX - r.left) * (canvas.width / r.width), (ev.clientY - r.top) * (canvas.height / r.height)]);
  };
  canvas.addEventListener("mousedown", (ev) => { from = at(ev); });
  canvas.addEventListener("mouseup", (ev) => {
    if (!from) return;
    const to = at(ev);
    const x = Math.max(0, Math.min(from[0], to[0]));
    const y = Math.max(0, Math.min(from[1], to[1]));
    const w = Math.min(canvas.width - x, Math.abs(to[0] - from[0]));
    const h = Math.min(canvas.height - y, Math.abs(to[1] - from[1]));
    from = null;
    if (w < 4 || h < 4) return;
    boxes.push({ label: `box ${boxes.length + 1}`, xywh: [Math.round(x), Math.round(y), Math.round(w), Math.round(h)], image: c.image });
    again();
  });
  return canvas;
}

/** @param {ViewCtx} c @param {Box[]} boxes @param {() => void} again */
function boxEditor(c, boxes, again) {
  const list = document.createElement("div");
  list.className = "box-list";
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.textContent = `Drag on the image to draw a box, or type one (pixels of this ${c.xray.width} × ${c.xray.height} image).`;
  list.append(hint);
  boxes.forEach((b, k) => {
    const row = document.createElement("div");
    row.className = "box-row";
    const name = Object.assign(document.createElement("input"), { value: b.label, title: "label" });
    name.style.width = "90px";
    name.addEventListener("change", () => { b.label = name.value.trim() || `box ${k + 1}`; again(); });
    row.append(name);
    b.xywh.forEach((v, j) => {
      const input = Object.assign(document.createElement("input"), { type: "number", value: String(v), min: "0", title: "xywh"[j] });
      input.addEventListener("change", () => { b.xywh[j] = Math.max(j < 2 ? 0 : 1, Math.round(Number(input.value) || 0)); again(); });
      row.append(input);
    });
    const del = Object.assign(document.createElement("button"), { className: "ghost", textContent: "×", title: "Remove this box" });
    del.addEventListener("click", () => { boxes.splice(k, 1); again(); });
    row.append(del);
    list.append(row);
  });
  const add = Object.assign(document.createElement("button"), { className: "ghost add-box", textContent: "+ Add box" });
  add.addEventListener("click", () => {
    const w = Math.round(c.xray.width / 4);
    const h = Math.round(c.xray.height / 4);
    boxes.push({ label: `box ${boxes.length + 1}`, xywh: [Math.round(c.xray.width / 2 - w / 2), Math.round(c.xray.height / 2 - h / 2), w, h], image: c.image });
    again();
  });
  list.append(add);
  return list;
}

/** @param {ViewCtx} c @param {Box[]} boxes @param {() => void} again */
function loader(c, boxes, again) {
  const wrap = document.createElement("label");
  wrap.className = "field";
  wrap.append("Load boxes from a labels.csv");
  const input = Object.assign(document.createElement("input"), { type: "file", accept: ".csv,text/csv", className: "labels-file" });
  input.addEventListener("change", async () => {
    const file = input.files?.[0];
    if (!file) return;
    try {
      const name = c.s.files[c.image]?.name ?? null;
      const rows = rowsFor(labelRows(await file.text()), c.s.mode === "live" ? name : null, c.xray.width, c.xray.height);
      for (const r of rows) for (const b of r.boxes) boxes.push({ label: b.label, xywh: b.xywh, image: c.image });
      ui.note = rows.length ? `Loaded ${rows.reduce((n, r) => n + r.boxes.length, 0)} boxes of ${rows.map((r) => r.file).join(", ")}.` : "No row of that file has boxes for this image (matched by file name, else by size).";
    } catch (err) {
      ui.note = `That file could not be read: ${/** @type {Error} */ (err).message}`;
    }
    again();
  });
  wrap.append(input);
  const note = document.createElement("p");
  note.className = "hint";
  note.textContent = ui.note;
  wrap.append(note);
  return wrap;
}

/** @param {AgreementResult} r @param {boolean} recorded */
function scoreTable(r, recorded) {
  const table = document.createElement("table");
  table.className = "scores";
  table.createCaption().textContent = recorded ? "From the recording" : "This token, every method";
  const head = table.createTHead().insertRow();
  for (const t of ["Method", "Pointing game", "IoU (top regions)", "Box coverage"]) head.append(Object.assign(document.createElement("th"), { textContent: t }));
  const body = table.createTBody();
  const methods = [...METHODS_ORDER, "gradient"].filter((m) => r.perMethod[m]).concat(Object.keys(r.perMethod).filter((m) => ![...METHODS_ORDER, "gradient"].includes(m)));
  for (const m of methods) {
    const v = r.perMethod[m];
    const row = body.insertRow();
    row.dataset.method = m;
    row.insertCell().textContent = methodLabel(m);
    const hit = row.insertCell();
    hit.textContent = v.hit ? "hit" : "miss";
    hit.className = v.hit ? "hit" : "miss";
    row.insertCell().textContent = v.iou.toFixed(3);
    row.insertCell().textContent = pct(v.coverage, 1);
  }
  return table;
}
