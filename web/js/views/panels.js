// @ts-check
/**
 * The panels beside the image: the report token by token (tinted by image reliance), the
 * image-reliance strip, the six-method grid and the statistics of the shown token.
 *
 * Owns these DOM pieces and their incremental updates (new tokens are appended, never the
 * whole report rebuilt). Clicks are reported through callbacks; app.js decides what they mean.
 */

import { displayValues } from "../draw/contrast.js";
import { drawHeatmap } from "../draw/heatmap.js";
import { METHOD_HINTS, methodLabel, millis, pct, relianceText, visibleToken } from "../format.js";
import { IMAGE_COLOURS } from "../images.js";

/** @typedef {import("../wire/protocol.js").StepFrame} StepFrame @typedef {import("../wire/protocol.js").ImageMaps} ImageMaps */

/**
 * Background tint of a token: stronger when more of its attention went to the image.
 * @param {number} mass 0..1
 */
export function tint(mass) {
  const a = 0.06 + 0.7 * Math.sqrt(Math.max(0, Math.min(1, mass)));
  return `rgba(45, 170, 180, ${a.toFixed(3)})`;
}

/**
 * Bring the report text up to date: append spans for new steps, mark the shown/pinned one.
 * @param {HTMLElement} el @param {StepFrame[]} steps @param {number} shown @param {number | null} pinned
 * @param {boolean} follow keep the newest token in view
 */
export function renderReport(el, steps, shown, pinned, follow) {
  if (steps.length < el.childElementCount) el.replaceChildren();
  for (let i = el.childElementCount; i < steps.length; i++) el.appendChild(tokenSpan(steps[i], i));
  // a replay that seeks forward leaves holes that later frames fill
  for (const hole of /** @type {NodeListOf<HTMLElement>} */ (el.querySelectorAll(".tok.missing"))) {
    const i = Number(hole.dataset.i);
    if (steps[i]) el.replaceChild(tokenSpan(steps[i], i), hole);
  }
  el.querySelector(".tok.shown")?.classList.remove("shown");
  el.querySelector(".tok.pinned")?.classList.remove("pinned");
  const current = /** @type {HTMLElement | null} */ (el.children[shown] ?? null);
  current?.classList.add("shown");
  if (pinned !== null) el.children[pinned]?.classList.add("pinned");
  if (current && (follow || pinned !== null)) current.scrollIntoView({ block: "nearest" });
}

/**
 * @param {StepFrame | undefined} s @param {number} i
 * @returns {HTMLSpanElement}
 */
function tokenSpan(s, i) {
  const span = document.createElement("span");
  span.dataset.i = String(i);
  if (!s) {
    span.className = "tok missing";
    span.textContent = "…";
    return span;
  }
  span.className = s.special ? "tok special" : s.text === "" ? "tok empty" : /^\s+$/.test(s.text) ? `tok ws ${s.text.includes("\n") ? "nl" : "sp"}` : "tok";
  span.textContent = s.special ? "end" : s.text;
  if (!s.special) span.style.backgroundColor = tint(s.mass);
  span.title = `#${i} ${visibleToken(s.text)} — image ${pct(s.mass)} · peak ${s.images.map((b) => b.zone).join(" / ")}`;
  return span;
}

/**
 * One bar per token, height = image_mass; the shown token outlined. For a study the bar
 * is stacked: one segment per image, in the image's colour, height = that image's share.
 * @param {HTMLCanvasElement} canvas @param {StepFrame[]} steps @param {number} shown @param {number} total
 * @param {boolean} [stacked]
 */
export function drawStrip(canvas, steps, shown, total, stacked = false) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, canvas.clientWidth);
  const h = Math.max(1, canvas.clientHeight);
  if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
  if (canvas.height !== Math.round(h * ratio)) canvas.height = Math.round(h * ratio);
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "rgba(255,255,255,0.12)";
  ctx.beginPath();
  for (const y of [0.25, 0.5, 0.75]) { ctx.moveTo(0, h - y * h); ctx.lineTo(w, h - y * h); }
  ctx.stroke();
  const n = Math.max(total, steps.length, 1);
  const bw = w / n;
  steps.forEach((s, i) => {
    if (!s) return;
    if (stacked && s.images.length > 1) {
      let y = h;
      s.images.forEach((b, k) => {
        const bh = Math.max(0, b.share * h);
        ctx.fillStyle = IMAGE_COLOURS[k];
        ctx.globalAlpha = i === shown ? 1 : 0.8;
        ctx.fillRect(i * bw, y - bh, Math.max(1, bw - (bw > 3 ? 1 : 0)), bh);
        y -= bh;
      });
      ctx.globalAlpha = 1;
      return;
    }
    const bh = Math.max(1, s.mass * h);
    ctx.fillStyle = i === shown ? "#ffd666" : tint(s.mass).replace(/[\d.]+\)$/, "0.95)");
    ctx.fillRect(i * bw, h - bh, Math.max(1, bw - (bw > 3 ? 1 : 0)), bh);
  });
  if (shown >= 0) {
    ctx.strokeStyle = "#ffd666";
    ctx.strokeRect(shown * bw + 0.5, 0.5, Math.max(2, bw) - 1, h - 1);
  }
}

/**
 * Token index under an x position of the strip.
 * @param {HTMLCanvasElement} canvas @param {number} clientX @param {number} count
 */
export function stripIndexAt(canvas, clientX, count) {
  const box = canvas.getBoundingClientRect();
  const i = Math.floor(((clientX - box.left) / box.width) * count);
  return Math.max(0, Math.min(count - 1, i));
}

/**
 * The six methods of the shown token on one image side by side; the selected one outlined.
 * @param {HTMLElement} el @param {ImageMaps | null} block the token on the shown image @param {string[]} methods
 * @param {{method: string, contrast: string}} view @param {[number, number]} grid
 * @param {Uint8ClampedArray} table @param {HTMLCanvasElement | null} xray @param {number} opacity
 */
export function renderMethodGrid(el, block, methods, view, grid, table, xray, opacity) {
  if (el.dataset.methods !== methods.join(",")) {
    el.replaceChildren(...methods.map((m) => {
      const fig = document.createElement("button");
      fig.className = "method-tile";
      fig.dataset.method = m;
      fig.title = `${methodLabel(m)}: ${METHOD_HINTS[m] ?? ""}`;
      const c = document.createElement("canvas");
      c.width = c.height = 128;
      const cap = document.createElement("span");
      cap.textContent = methodLabel(m);
      fig.append(c, cap);
      return fig;
    }));
    el.dataset.methods = methods.join(",");
  }
  for (const tile of /** @type {NodeListOf<HTMLElement>} */ (el.querySelectorAll(".method-tile"))) {
    const m = /** @type {string} */ (tile.dataset.method);
    tile.classList.toggle("selected", m === view.method);
    tile.setAttribute("aria-pressed", String(m === view.method));
    const canvas = /** @type {HTMLCanvasElement} */ (tile.querySelector("canvas"));
    const map = block?.maps[m];
    if (xray) {
      const aspect = xray.height / xray.width;
      const ch = Math.round(128 * aspect);
      if (canvas.height !== ch) canvas.height = ch;
    }
    if (map) drawHeatmap(canvas, displayValues(map, view.contrast), grid, table, xray, opacity);
    else canvas.getContext("2d")?.clearRect(0, 0, canvas.width, canvas.height);
  }
}

/**
 * The shown token's numbers, one line each: the token, then its block on the shown image;
 * `scope` names the shown image of a study, `extra` adds rows (what it read, the sink).
 * @param {HTMLElement} el @param {StepFrame | null} step @param {ImageMaps | null} block
 * @param {{label: string, total: number} | null} [scope] @param {[string, string][]} [extra]
 */
export function renderStats(el, step, block, scope = null, extra = []) {
  if (!step || !block) {
    el.replaceChildren();
    return;
  }
  const rows = [
    ["Token", `#${step.i} “${visibleToken(step.text)}”`],
    ["Image reliance", relianceText(block.share, scope)],
    ["Peak", `${block.zone} (row ${block.peak[0]}, col ${block.peak[1]})`],
    ["Entropy", `${block.ent.toFixed(2)} bits (${pct(block.entN)} of max)`],
    ["Regions", block.regions.map((r) => `${r.zone} ${pct(r.mass)}`).join(", ") || "none"],
    ...extra,
    ["Timing", `model ${millis(step.modelMs)} · maps ${millis(step.mapsMs)}`],
  ];
  el.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    return [dt, dd];
  }));
}
