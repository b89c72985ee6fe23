// @ts-check
/**
 * The analysis panel of one pinned token, and the overview of the whole report.
 *
 * Owns the original analysis panel's tiles (original, raw, layer-weighted, head importance,
 * flow, consensus, gradient once computed, overlay, regions, statistics, attention-value histogram), drawn by tile
 * functions `(ctx, w, h)` so the screen and the PNG export share one drawing path; and the
 * overview grid of small multiples. Which token is pinned is app.js's business.
 */

import { displayValues, summarise } from "../draw/contrast.js";
import { drawGrid, paintGrid } from "../draw/heatmap.js";
import { drawRegions, drawSideMarkers } from "../draw/overlay.js";
import { inOneUnit, legendEnds, methodLabel, millis, pct, relianceText, visibleToken } from "../format.js";
import { rawValues } from "../wire/protocol.js";

/**
 * @typedef {import("../wire/protocol.js").StepFrame} StepFrame
 * @typedef {import("../wire/protocol.js").ImageMaps} ImageMaps
 * @typedef {{step: StepFrame, block: ImageMaps} | null} Shown  a token and its block on the shown image
 * @typedef {{step: StepFrame, block: ImageMaps, grid: [number, number], layers: number, xray: HTMLCanvasElement,
 *   table: Uint8ClampedArray, contrast: string, opacity: number, method: string,
 *   scope?: {label: string, total: number} | null, extra?: [string, string][]}} Ctx  extra: more statistics rows
 * @typedef {{title: string, draw?: (ctx: CanvasRenderingContext2D, w: number, h: number) => void,
 *   rows?: [string, string][]}} Tile
 */

const MAP_TILES = ["raw", "layer_weighted", "head_importance", "flow", "consensus"];

/**
 * @param {CanvasRenderingContext2D} ctx @param {number} w @param {number} h @param {Ctx} c
 * @param {string | null} method heatmap over the X-ray, or null for the X-ray alone
 * @param {number} opacity
 */
function drawMapTile(ctx, w, h, c, method, opacity) {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, w, h);
  if (opacity < 1 || method === null) ctx.drawImage(c.xray, 0, 0, w, h);
  const map = method ? c.block.maps[method] : undefined;
  if (!map) return;
  const grid = document.createElement("canvas");
  paintGrid(grid, displayValues(map, c.contrast), c.grid[1], c.grid[0], c.table);
  drawGrid(ctx, grid, { x: 0, y: 0, w, h }, opacity);
}

/**
 * Histogram of the selected method's raw values: bars in palette colours, mean and p95 marked.
 * @param {CanvasRenderingContext2D} ctx @param {number} w @param {number} h @param {Ctx} c
 */
function drawHistogram(ctx, w, h, c) {
  ctx.fillStyle = "#0b0f14";
  ctx.fillRect(0, 0, w, h);
  const map = c.block.maps[c.method];
  if (!map) return;
  const raw = rawValues(map);
  const s = summarise(map);
  const bins = new Array(24).fill(0);
  const span = s.max - s.min || 1;
  for (const v of raw) bins[Math.min(23, Math.floor(((v - s.min) / span) * 24))] += 1;
  const top = Math.max(...bins, 1);
  const pad = { l: 8, r: 8, t: 10, b: 22 };
  const bw = (w - pad.l - pad.r) / 24;
  bins.forEach((n, k) => {
    const t = Math.round(((k + 0.5) / 24) * 255) * 4;
    ctx.fillStyle = `rgb(${c.table[t]} ${c.table[t + 1]} ${c.table[t + 2]})`;
    const bh = (n / top) * (h - pad.t - pad.b);
    ctx.fillRect(pad.l + k * bw + 0.5, h - pad.b - bh, bw - 1, bh);
  });
  const xOf = (/** @type {number} */ v) => pad.l + ((v - s.min) / span) * (w - pad.l - pad.r);
  for (const [v, colour] of /** @type {[number, string][]} */ ([[s.mean, "#fff"], [s.p95, "#ffd666"]])) {
    ctx.strokeStyle = colour;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(xOf(v), pad.t);
    ctx.lineTo(xOf(v), h - pad.b);
    ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.fillStyle = "#9fb0c3";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "bottom";
  ctx.textAlign = "left";
  const [lo, hi] = legendEnds(s.min, s.max);
  ctx.fillText(lo, pad.l, h - 4);
  ctx.textAlign = "right";
  ctx.fillText(hi, w - pad.r, h - 4);
  ctx.textAlign = "center";
  ctx.fillText(`${methodLabel(c.method)} · mean ┆ p95`, w / 2, h - 4);
}

/**
 * The map's range, mean and quantiles, all in the unit of its largest value (inOneUnit).
 * @param {string} method @param {ReturnType<typeof summarise>} sum @returns {[string, string][]}
 */
function valueRows(method, sum) {
  const { texts: [min, max, mean, std, median, p5, p95], unit } = inOneUnit([sum.min, sum.max, sum.mean, sum.std, sum.median, sum.p5, sum.p95]);
  return [
    [`${methodLabel(method)} range`, `${min} … ${max}${unit}`],
    ["Mean ± sd", `${mean} ± ${std}${unit}`],
    ["Median · p5 · p95", `${median} · ${p5} · ${p95}${unit}`],
  ];
}

/** @param {Ctx} c @returns {[string, string][]} */
export function statRows(c) {
  const s = c.step;
  const b = c.block;
  const sum = summarise(b.maps[c.method] ?? { lo: 0, hi: 0, u8: new Uint8Array(0) });
  return [
    ["Token", `#${s.i} “${visibleToken(s.text)}” (id ${s.tokenId}, position ${s.pos})`],
    ["At", millis(s.tMs)],
    ["Image reliance", relianceText(b.share, c.scope)],
    ["Entropy", `${b.ent.toFixed(2)} bits · ${pct(b.entN)} of uniform`],
    ["Peak", `${b.zone} · row ${b.peak[0]}, col ${b.peak[1]}`],
    ["Regions", b.regions.map((r) => `${r.zone} ${pct(r.mass)}`).join(" · ") || "none"],
    ...(c.extra ?? []),
    ["Layers seeing image", `${s.seeing} of ${c.layers}`],
    ["Compute", `model ${millis(s.modelMs)} · maps ${millis(s.mapsMs)}`],
    ...valueRows(c.method, sum),
  ];
}

/** @param {Ctx} c @returns {Tile[]} */
export function tiles(c) {
  /** @type {Tile[]} */
  const out = [{ title: "Original", draw: (ctx, w, h) => { drawMapTile(ctx, w, h, c, null, 1); drawSideMarkers(ctx, { x: 0, y: 0, w, h }, 0.8); } }];
  const maps = c.block.maps.gradient ? [...MAP_TILES, "gradient"] : MAP_TILES;
  for (const m of maps) out.push({ title: methodLabel(m), draw: (ctx, w, h) => drawMapTile(ctx, w, h, c, m, 1) });
  out.push({ title: `Overlay · ${methodLabel(c.method)}`, draw: (ctx, w, h) => drawMapTile(ctx, w, h, c, c.method, c.opacity) });
  out.push({
    title: "Regions",
    draw: (ctx, w, h) => {
      drawMapTile(ctx, w, h, c, null, 1);
      drawRegions(ctx, c.block.regions, { x: 0, y: 0, w, h }, Math.max(0.7, w / 400));
    },
  });
  out.push({ title: "Statistics", rows: statRows(c) });
  out.push({ title: "Attention values", draw: (ctx, w, h) => drawHistogram(ctx, w, h, c) });
  return out;
}

/**
 * Fill the panel's tile grid for one token.
 * @param {HTMLElement} el @param {Ctx} c
 */
export function renderDetail(el, c) {
  const aspect = c.xray.height / c.xray.width;
  el.replaceChildren(...tiles(c).map((t) => {
    const fig = document.createElement("figure");
    fig.className = t.rows ? "tile stats-tile" : "tile";
    const cap = document.createElement("figcaption");
    cap.textContent = t.title;
    if (t.rows) {
      const dl = document.createElement("dl");
      for (const [k, v] of t.rows) {
        const dt = document.createElement("dt");
        dt.textContent = k;
        const dd = document.createElement("dd");
        dd.textContent = v;
        dl.append(dt, dd);
      }
      fig.append(cap, dl);
    } else if (t.draw) {
      const canvas = document.createElement("canvas");
      canvas.width = 320;
      canvas.height = t.title === "Attention values" ? 240 : Math.round(320 * aspect);
      t.draw(/** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d")), canvas.width, canvas.height);
      fig.append(cap, canvas);
    }
    return fig;
  }));
}

/**
 * The whole panel as one picture: title, then the tiles in a 5 x 2 grid.
 * @param {Ctx} c @param {string} heading @returns {HTMLCanvasElement}
 */
export function exportDetail(c, heading) {
  const all = tiles(c);
  const cols = 5;
  const tw = 360;
  const th = Math.round(tw * Math.max(0.75, c.xray.height / c.xray.width));
  const head = 56;
  const capH = 26;
  const out = document.createElement("canvas");
  out.width = cols * tw + (cols + 1) * 12;
  out.height = head + Math.ceil(all.length / cols) * (th + capH + 12) + 12;
  const ctx = /** @type {CanvasRenderingContext2D} */ (out.getContext("2d"));
  ctx.fillStyle = "#0b0f14";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.fillStyle = "#e8eef5";
  ctx.font = "600 20px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  ctx.fillText(heading, 12, head / 2);
  all.forEach((t, k) => {
    const x = 12 + (k % cols) * (tw + 12);
    const y = head + Math.floor(k / cols) * (th + capH + 12);
    ctx.fillStyle = "#9fb0c3";
    ctx.font = "600 14px system-ui, sans-serif";
    ctx.fillText(t.title, x, y + capH / 2);
    ctx.save();
    ctx.translate(x, y + capH);
    if (t.draw) t.draw(ctx, tw, th);
    else if (t.rows) drawRows(ctx, t.rows, tw, th);
    ctx.restore();
  });
  return out;
}

/**
 * @param {CanvasRenderingContext2D} ctx @param {[string, string][]} rows @param {number} w @param {number} h
 */
function drawRows(ctx, rows, w, h) {
  ctx.fillStyle = "#121821";
  ctx.fillRect(0, 0, w, h);
  const line = Math.min(22, (h - 8) / rows.length);
  ctx.font = `${Math.round(line * 0.55)}px system-ui, sans-serif`;
  rows.forEach(([k, v], i) => {
    const y = 6 + line * (i + 0.5);
    ctx.fillStyle = "#9fb0c3";
    ctx.fillText(k, 8, y);
    ctx.fillStyle = "#e8eef5";
    ctx.fillText(v, 8 + w * 0.36, y, w * 0.62);
  });
}

/**
 * Small multiples: one thumbnail per token (evenly sampled past `limit`), each clickable.
 * @param {HTMLElement} el @param {Shown[]} shown every token on the shown image @param {Omit<Ctx, "step" | "block">} c
 * @param {number | null} pinned @param {number} [limit]
 */
export function renderOverview(el, shown, c, pinned, limit = 60) {
  const present = /** @type {{step: StepFrame, block: ImageMaps}[]} */ (shown.filter((x) => x && !x.step.special));
  const stride = Math.max(1, present.length / limit);
  const picked = [];
  for (let k = 0; k < present.length && picked.length < limit; k += stride) picked.push(present[Math.floor(k)]);
  const aspect = c.xray.height / c.xray.width;
  el.replaceChildren(...picked.map(({ step, block }) => {
    const b = document.createElement("button");
    b.className = step.i === pinned ? "thumb pinned" : "thumb";
    b.dataset.i = String(step.i);
    b.title = `#${step.i} ${visibleToken(step.text)} · ${block.zone} · image ${pct(block.share)}`;
    const canvas = document.createElement("canvas");
    canvas.width = 112;
    canvas.height = Math.round(112 * aspect);
    drawMapTile(/** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d")), canvas.width, canvas.height, { ...c, step, block }, c.method, c.opacity);
    const cap = document.createElement("span");
    cap.textContent = `${step.i} ${visibleToken(step.text)}`;
    b.append(canvas, cap);
    return b;
  }));
}
