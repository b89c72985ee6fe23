// @ts-check
/**
 * Two recorded runs side by side (two recordings, two questions on one image, or two
 * models): one play button and one seek bar drive both, token by token; each run's map
 * of the shown token over its X-ray, and their difference on a diverging palette.
 *
 * Owns the Compare tab: fetching and decoding both recording files in the page (frames
 * concatenated, as recorded), the shared clock, and the three pictures. The difference
 * is (A − B) of the two maps each scaled to 0..1, drawn over A's X-ray; blue where B
 * looks more, red where A does.
 */

import { displayValues } from "../draw/contrast.js";
import { methodLabel, modelNote, plural, visibleToken } from "../format.js";
import { drawHeatmap } from "../draw/heatmap.js";
import { listRecordings } from "./library.js";
import { decodeAll } from "../wire/msgpack.js";
import { $, apiUrl, store } from "../page.js";
import { DIVERGING, cssGradient, palette } from "../draw/palette.js";
import { SPEEDS } from "./player.js";
import { blockOf, imageName, imagesOf } from "../images.js";
import { frameFromValue } from "../wire/protocol.js";
import { loadXRay } from "../draw/xray.js";

/**
 * @typedef {{id: string, start: import("../wire/protocol.js").StartFrame, steps: import("../wire/protocol.js").StepFrame[],
 *   xrays: import("../draw/xray.js").XRay[]}} Run  one X-ray per image of the run
 */

const TOKENS_PER_S = 8;
/** @type {{a: Run | null, b: Run | null, at: number, playing: boolean, timer: number, speed: number, image: number}} */
const ui = { a: null, b: null, at: 0, playing: false, timer: 0, speed: 1, image: 0 };

/**
 * One recording file -> its start frame, steps and X-ray.
 * @param {string} id @param {string | null} token @returns {Promise<Run>}
 */
export async function loadRun(id, token) {
  const res = await fetch(apiUrl(`/api/recordings/${encodeURIComponent(id)}`, token));
  if (!res.ok) throw new Error(`the server answered ${res.status} for recording ${id}`);
  const { values } = decodeAll(new Uint8Array(await res.arrayBuffer()));
  /** @type {import("../wire/protocol.js").StartFrame | null} */ let start = null;
  /** @type {import("../wire/protocol.js").StepFrame[]} */ const steps = [];
  for (const v of values) {
    const f = frameFromValue(v);
    if (f.type === "start") start = f;
    else if (f.type === "step") steps[f.i] = f;
  }
  if (!start) throw new Error(`recording ${id} has no start frame`);
  const xrays = await Promise.all(imagesOf(start).map((im) => loadXRay(new Blob([/** @type {BlobPart} */ (im.png)], { type: "image/png" }))));
  return { id, start, steps, xrays };
}

/**
 * The difference of two maps, each scaled 0..1 (contrast mode applied), mapped to 0..1
 * with 0.5 for no difference.
 * @param {import("../wire/fields.js").QMap} a @param {import("../wire/fields.js").QMap} b @param {string} contrast
 */
export function differenceValues(a, b, contrast) {
  const va = displayValues(a, contrast);
  const vb = displayValues(b, contrast);
  const out = new Float32Array(va.length);
  for (let k = 0; k < out.length; k++) out[k] = 0.5 + (va[k] - (vb[k] ?? 0)) / 2;
  return out;
}

/** @param {string | null} token */
export async function showCompare(token) {
  try {
    const list = await listRecordings(token);
    for (const [id, pick] of /** @type {[string, number][]} */ ([["compare-a", 0], ["compare-b", 1]])) {
      const sel = /** @type {HTMLSelectElement} */ ($(id));
      const keep = sel.value;
      sel.replaceChildren(...list.map((r) => new Option(
        `${r.question ? `“${r.question.slice(0, 40)}”` : "Full report"} · ${r.created ? new Date(r.created * 1000).toLocaleTimeString() : r.id} · ${r.steps === null || r.steps === undefined ? "? tokens" : plural(r.steps, "token")}`, r.id)));
      sel.value = list.some((r) => r.id === keep) ? keep : list[Math.min(pick, list.length - 1)]?.id ?? "";
    }
    $("compare-status").textContent = list.length < 2 ? "Record two sessions to compare them." : "";
  } catch (err) {
    $("compare-status").textContent = `The recordings could not be listed: ${/** @type {Error} */ (err).message}`;
  }
}

/** @param {string | null} token */
export function bindCompare(token) {
  const speed = /** @type {HTMLSelectElement} */ ($("compare-speed"));
  speed.replaceChildren(...SPEEDS.map((s) => new Option(`${s}×`, String(s), s === 1, s === 1)));
  speed.addEventListener("change", () => { ui.speed = Number(speed.value); if (ui.playing) play(true); });
  $("compare-load").addEventListener("click", () => void load(token));
  $("compare-play").addEventListener("click", () => play(!ui.playing));
  const seek = /** @type {HTMLInputElement} */ ($("compare-seek"));
  seek.addEventListener("input", () => { play(false); ui.at = Number(seek.value); draw(); });
  const image = /** @type {HTMLSelectElement} */ ($("compare-image"));
  image.addEventListener("change", () => { ui.image = Number(image.value); draw(); });
  $("compare-diff-bar").style.background = cssGradient({ id: "diverging", label: "", table: DIVERGING });
  store.subscribe((_, changed) => { if (ui.a && [...changed].some((k) => k.startsWith("view."))) draw(); });
}

/** @param {string | null} token */
async function load(token) {
  const ids = [/** @type {HTMLSelectElement} */ ($("compare-a")).value, /** @type {HTMLSelectElement} */ ($("compare-b")).value];
  if (!ids[0] || !ids[1]) return;
  play(false);
  $("compare-status").textContent = "Loading…";
  /** @type {Run[]} */
  let runs;
  try {
    runs = await Promise.all(ids.map((id) => loadRun(id, token)));
  } catch (err) {
    $("compare-status").textContent = `Could not load: ${/** @type {Error} */ (err).message}`;
    return;
  }
  const [a, b] = runs;
  Object.assign(ui, { a, b, at: 0, image: 0 });
  const standIn = a.start.model.standIn || b.start.model.standIn;  // one stand-in run is enough to say so
  const note = $("compare-note");
  note.hidden = false;
  note.dataset.standIn = String(standIn);
  note.textContent = modelNote(standIn);
  const shared = Math.min(imagesOf(a.start).length, imagesOf(b.start).length);
  const start = a.start;
  /** @type {HTMLSelectElement} */ ($("compare-image")).replaceChildren(...Array.from({ length: shared }, (_, k) => new Option(imageName(start, k), String(k))));
  $("compare-image-field").hidden = shared < 2;
  const same = a.start.model.grid.join() === b.start.model.grid.join();
  $("compare-status").textContent = same ? "" : "The two runs use different map grids: no difference map.";
  /** @type {HTMLButtonElement} */ ($("compare-play")).disabled = false;
  /** @type {HTMLInputElement} */ ($("compare-seek")).disabled = false;
  draw();
}

/** @param {boolean} on */
function play(on) {
  clearInterval(ui.timer);
  ui.playing = on && ui.a !== null;
  if (ui.playing) {
    if (ui.at >= total() - 1) ui.at = 0;
    ui.timer = window.setInterval(() => {
      ui.at += 1;
      if (ui.at >= total() - 1) play(false);
      draw();
    }, 1000 / (TOKENS_PER_S * ui.speed));
  }
  $("compare-play").textContent = ui.playing ? "❚❚ Pause" : "▶ Play";
}

function total() {
  return Math.max(ui.a?.steps.length ?? 0, ui.b?.steps.length ?? 0);
}

/** @param {Run} run @param {number} at @returns {import("../wire/protocol.js").StepFrame | null} */
function stepAt(run, at) {
  return run.steps[Math.min(at, run.steps.length - 1)] ?? null;
}

function draw() {
  const { a, b } = ui;
  if (!a || !b) return;
  const view = store.state.view;
  const table = palette(view.palette).table;
  const method = view.method === "gradient" ? "consensus" : view.method;
  const [sa, sb] = [stepAt(a, ui.at), stepAt(b, ui.at)];
  const [fa, fb] = [sa ? blockOf(sa, ui.image) : null, sb ? blockOf(sb, ui.image) : null];
  for (const [key, run, step, focus] of /** @type {const} */ ([["a", a, sa, fa], ["b", b, sb, fb]])) {
    const canvas = /** @type {HTMLCanvasElement} */ ($(`compare-canvas-${key}`));
    const xray = run.xrays[ui.image] ?? run.xrays[0];
    size(canvas, xray);
    const map = focus?.maps[method];
    if (map) drawHeatmap(canvas, displayValues(map, view.contrast), run.start.model.grid, table, xray.canvas, view.opacity);
    canvas.dataset.step = String(step?.i ?? -1);
    $(`compare-cap-${key}`).textContent = `${key.toUpperCase()} · ${run.start.prompt.question ?? "full report"} · #${step?.i ?? "–"} “${visibleToken(step?.text ?? "")}” · ${methodLabel(method)}`;
    texts(/** @type {HTMLElement} */ ($(`compare-text-${key}`)), run, ui.at);
  }
  const diff = /** @type {HTMLCanvasElement} */ ($("compare-canvas-diff"));
  const under = a.xrays[ui.image] ?? a.xrays[0];
  size(diff, under);
  const ma = fa?.maps[method];
  const mb = fb?.maps[method];
  if (ma && mb && ma.u8.length === mb.u8.length) {
    drawHeatmap(diff, differenceValues(ma, mb, view.contrast), a.start.model.grid, DIVERGING, under.canvas, 0.8);
    diff.dataset.step = String(ui.at);
  } else diff.dataset.step = "-1";
  const seek = /** @type {HTMLInputElement} */ ($("compare-seek"));
  seek.max = String(Math.max(0, total() - 1));
  seek.value = String(ui.at);
  $("compare-label").textContent = `token ${ui.at + 1} / ${total()}`;
}

/** @param {HTMLCanvasElement} canvas @param {import("../draw/xray.js").XRay} xray */
function size(canvas, xray) {
  const w = Math.min(640, xray.width);
  const h = Math.round((w * xray.height) / xray.width);
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
}

/** @param {HTMLElement} el @param {Run} run @param {number} at */
function texts(el, run, at) {
  if (el.dataset.run !== run.id) {
    el.dataset.run = run.id;
    el.replaceChildren(...run.steps.map((s) => Object.assign(document.createElement("span"), { textContent: s && !s.special ? s.text : "" })));
  }
  el.querySelector(".now")?.classList.remove("now");
  const now = /** @type {HTMLElement | undefined} */ (el.children[Math.min(at, run.steps.length - 1)]);
  now?.classList.add("now");
  now?.scrollIntoView({ block: "nearest" });
}
