// @ts-check
/**
 * The 3D tab of the detail drawer: where in the chest the token looked, estimated from a
 * study's frontal and lateral maps (medviz_core/analyses/biplanar.py), turned by dragging.
 *
 * Owns asking for the shown token's volume (an `analyze` of kind `volume` with the shown
 * method, once per token and method; the view follows the pinned, else current, token),
 * the one VolumeView it shows it in, and its PNG export. The tab exists only for a study
 * whose labels name one frontal and one lateral image (images.js biplanarPair). Drawing
 * is volume.js's; the drag view is volume-view.js's.
 */

import { analyze, findJob, isWaiting, jobWords, whyUnavailable } from "./analysis.js";
import { downloadPng } from "../export.js";
import { methodLabel, visibleToken } from "../format.js";
import { imageName } from "../images.js";
import { METHODS_ORDER } from "../methods.js";
import { rawValues } from "../wire/protocol.js";
import { VolumeView } from "./volume-view.js";

/**
 * @typedef {import("./analysis-views.js").ViewCtx} ViewCtx
 * @typedef {import("../wire/analysis-protocol.js").VolumeResult} VolumeResult
 */

/** @type {{view: VolumeView | null, root: HTMLElement | null, key: string, shown: string, session: string}} */
const ui = { view: null, root: null, key: "", shown: "", session: "" };

/**
 * The method the volume is made of: the shown one, else consensus (volumes come from the streamed maps).
 * @param {import("../state.js").State} s
 */
export function volumeMethod(s) {
  const wanted = s.view.method;
  const computed = s.start?.methods.length ? s.start.methods : METHODS_ORDER;
  return computed.includes(wanted) ? wanted : computed.includes("consensus") ? "consensus" : computed[0];
}

/** @param {HTMLElement} el */
function build(el) {
  ui.view?.destroy();
  const bar = document.createElement("div");
  bar.className = "job-box";
  const status = document.createElement("span");
  status.className = "job-status";
  const save = document.createElement("button");
  save.className = "ghost small volume-export";
  save.textContent = "Export 3D PNG";
  bar.append(status, save);
  const fig = document.createElement("figure");
  fig.className = "tile volume-tile";
  const caption = document.createElement("figcaption");
  const canvas = document.createElement("canvas");
  canvas.id = "volume-canvas";
  canvas.width = 520;
  canvas.height = 460;
  fig.append(caption, canvas);
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.textContent = "An estimate, not tomography: the frontal map (rows × columns) times the lateral map (rows × depth), assuming both views are aligned vertically with the patient in the same position. Drag to turn; double-click resets.";
  el.replaceChildren(bar, fig, hint);
  ui.view = new VolumeView(canvas);
  ui.root = el;
  save.addEventListener("click", () => {
    if (ui.view) void downloadPng(ui.view.canvas, `medviz_3d_token${canvas.dataset.step ?? ""}_${canvas.dataset.method ?? ""}.png`);
  });
}

/**
 * Show the token's volume, asking for it when no job has it yet; the previous picture
 * stays while the next one is computed.
 * @param {HTMLElement} el @param {ViewCtx} c
 */
export function renderVolumePanel(el, c) {
  if (ui.root !== el || !el.querySelector("#volume-canvas")) build(el);
  const view = /** @type {VolumeView} */ (ui.view);
  const canvas = view.canvas;
  const caption = /** @type {HTMLElement} */ (el.querySelector("figcaption"));
  const status = /** @type {HTMLElement} */ (el.querySelector(".job-status"));
  const i = c.step.i;
  const method = volumeMethod(c.s);
  const done = findJob(c.s.jobs, "volume", i, { method, done: true });
  const job = done ?? findJob(c.s.jobs, "volume", i, { method });
  const waiting = isWaiting("volume", i, method);
  // one request at a time: while tokens stream in, the view catches up with the newest when an answer comes
  if (!job && !isWaiting("volume", null) && !c.step.special) analyze({ kind: "volume", index: i, method });
  const key = `${c.s.start?.session}|${i}|${method}|${job?.job}|${job?.status}|${waiting}|${c.s.view.palette}`;
  if (key === ui.key) return;
  ui.key = key;
  if (ui.session !== c.s.start?.session) {
    ui.session = c.s.start?.session ?? "";
    ui.shown = "";
    view.setVolume(null);
  }
  view.setTable(c.table);
  status.dataset.status = job?.status ?? (waiting ? "queued" : "");
  const why = job ? "" : whyUnavailable("volume");
  status.textContent = c.step.special ? "no 3D estimate for an end token" : done ? "" : why || jobWords(job, waiting || !job);
  const result = done ? /** @type {VolumeResult} */ (done.result) : null;
  if (!result) return;
  const shown = `${done?.job}`;
  if (shown !== ui.shown) {
    ui.shown = shown;
    view.setVolume({ values: rawValues(result.volume), size: result.size });
  }
  canvas.dataset.step = String(i);
  canvas.dataset.method = method;
  view.draw(); // now, so the canvas shows the token its data-step names
  const start = c.s.start;
  caption.textContent = `#${i} “${visibleToken(c.step.text)}” · ${methodLabel(method)} · ${imageName(start, result.frontal)} × ${imageName(start, result.lateral)}` +
    (result.peak ? ` · peak at row ${result.peak[0]}, column ${result.peak[1]}, depth ${result.peak[2]} of ${result.size}` : " · no attention on the images");
}
