// @ts-check
/**
 * The main view: the windowed X-ray, the heatmap over it, regions, trail and side markers,
 * composed on one canvas that fits its container.
 *
 * Owns the layout of the image inside the canvas (aspect kept, centred), the order of
 * the layers, and the region labels shown as page elements over the canvas (on a PNG
 * export they are drawn into the picture). `compose` is pure (scene in, pixels out) so the PNG export draws the very same
 * picture at full resolution. What to show comes from app.js; colours from heatmap.js.
 */

import { drawGrid, paintGrid } from "../draw/heatmap.js";
import { drawRegions, drawSideMarkers, drawTrail } from "../draw/overlay.js";

/**
 * @typedef {{
 *   xray: HTMLCanvasElement | null, values: Float32Array | null, grid: [number, number],
 *   table: Uint8ClampedArray, opacity: number, fade: boolean,
 *   regions: import("../wire/protocol.js").Region[], trail: [number, number][], markers: boolean,
 * }} Scene
 */

/**
 * The largest rectangle with the image's aspect centred in a w x h box.
 * @param {number} w @param {number} h @param {number} iw @param {number} ih
 */
export function fitRect(w, h, iw, ih) {
  const s = Math.min(w / iw, h / ih);
  return { x: Math.round((w - iw * s) / 2), y: Math.round((h - ih * s) / 2), w: Math.round(iw * s), h: Math.round(ih * s) };
}

/**
 * Draw a whole scene into a context of w x h pixels.
 * @param {CanvasRenderingContext2D} ctx @param {number} w @param {number} h @param {Scene} scene
 * @param {HTMLCanvasElement} gridCanvas scratch canvas for the grid-sized heatmap
 * @param {number} scale CSS-to-canvas pixel ratio, for line widths and fonts
 * @param {boolean} [pageLabels] leave the region labels undrawn and return where they go (the page shows them)
 * @returns {import("../draw/overlay.js").Label[]} the region labels placed, in canvas pixels
 */
export function compose(ctx, w, h, scene, gridCanvas, scale, pageLabels = false) {
  ctx.fillStyle = "#05070a";
  ctx.fillRect(0, 0, w, h);
  if (!scene.xray) return [];
  const rect = fitRect(w, h, scene.xray.width, scene.xray.height);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(scene.xray, rect.x, rect.y, rect.w, rect.h);
  if (scene.values) {
    paintGrid(gridCanvas, scene.values, scene.grid[1], scene.grid[0], scene.table, scene.fade);
    drawGrid(ctx, gridCanvas, rect, scene.opacity);
  }
  const labels = scene.regions.length ? drawRegions(ctx, scene.regions, rect, scale, !pageLabels) : [];
  if (scene.trail.length) drawTrail(ctx, scene.trail, scene.grid, rect, scale);
  if (scene.markers) drawSideMarkers(ctx, rect, scale);
  return labels;
}

export class Stage {
  /** @param {HTMLCanvasElement} canvas @param {HTMLElement} box the element it fills */
  constructor(canvas, box) {
    this.canvas = canvas;
    this.box = box;
    this.gridCanvas = document.createElement("canvas");
    this.labels = document.createElement("div");  // the region labels, as page elements over the canvas
    this.labels.className = "region-labels";
    box.append(this.labels);
    /** @type {Scene | null} */ this.scene = null;
    new ResizeObserver(() => this.resize()).observe(box);
    this.resize();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.floor(this.box.clientWidth));
    const h = Math.max(1, Math.floor(this.box.clientHeight));
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${h}px`;
    this.canvas.width = Math.round(w * ratio);
    this.canvas.height = Math.round(h * ratio);
    if (this.scene) this.draw(this.scene);
  }

  /** @param {Scene} scene */
  draw(scene) {
    this.scene = scene;
    const ctx = /** @type {CanvasRenderingContext2D} */ (this.canvas.getContext("2d"));
    const ratio = window.devicePixelRatio || 1;
    const placed = compose(ctx, this.canvas.width, this.canvas.height, scene, this.gridCanvas, ratio, true);
    // what is on the canvas, for the page's tests: the X-ray's rectangle (CSS px) and the regions outlined
    const r = scene.xray ? fitRect(this.canvas.width, this.canvas.height, scene.xray.width, scene.xray.height) : null;
    this.canvas.dataset.xray = r ? [r.x, r.y, r.w, r.h].map((v) => (v / ratio).toFixed(1)).join(",") : "";
    this.canvas.dataset.regions = JSON.stringify(scene.regions.map((g) => ({ box: g.box, zone: g.zone, mass: g.mass })));
    const key = placed.map((l) => `${l.text}@${Math.round(l.x)},${Math.round(l.y)}`).join("|");
    if (this.labels.dataset.key === key) return;
    this.labels.dataset.key = key;
    this.labels.replaceChildren(...placed.map((l) => {
      const el = document.createElement("span");
      el.className = "region-label";
      el.textContent = l.text;
      Object.assign(el.style, {
        left: `${l.x / ratio}px`, top: `${l.y / ratio}px`, width: `${l.w / ratio}px`, height: `${l.h / ratio}px`,
        fontSize: `${l.size / ratio}px`, lineHeight: `${l.h / ratio}px`, paddingLeft: `${(0.3 * l.size) / ratio}px`,
      });
      return el;
    }));
  }

  /**
   * The current scene at the X-ray's own resolution (for export).
   * @returns {HTMLCanvasElement | null}
   */
  snapshot() {
    if (!this.scene?.xray) return null;
    const longest = Math.max(this.scene.xray.width, this.scene.xray.height);
    const scale = Math.max(1, Math.min(4, 1024 / longest));
    const out = document.createElement("canvas");
    out.width = Math.round(this.scene.xray.width * scale);
    out.height = Math.round(this.scene.xray.height * scale);
    const ctx = /** @type {CanvasRenderingContext2D} */ (out.getContext("2d"));
    compose(ctx, out.width, out.height, this.scene, document.createElement("canvas"), Math.max(1, out.width / 600));
    return out;
  }
}
