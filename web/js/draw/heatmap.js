// @ts-check
/**
 * Pure heatmap rendering: grid values + palette -> pixels.
 *
 * Owns the two drawing steps of the heatmap: colouring a grid-sized canvas in one pass
 * through the palette table (putImageData), and drawing it scaled with smoothing over a
 * rectangle of a bigger canvas. Contrast (contrast.js), animation (animator.js) and the
 * X-ray underneath (xray.js) live elsewhere.
 */

/**
 * Colour one grid into a grid-sized canvas (resized when the grid changes).
 * @param {HTMLCanvasElement | OffscreenCanvas} grid a canvas of gw x gh pixels
 * @param {Float32Array | Uint8Array} values 0..1 floats, or 0..255 palette indices
 * @param {number} gw @param {number} gh
 * @param {Uint8ClampedArray} table 256 x RGBA
 * @param {boolean} [fadeLow] alpha follows the value, so low attention stays see-through
 */
export function paintGrid(grid, values, gw, gh, table, fadeLow = false) {
  if (grid.width !== gw || grid.height !== gh) {
    grid.width = gw;
    grid.height = gh;
  }
  const ctx = /** @type {CanvasRenderingContext2D} */ (grid.getContext("2d"));
  const img = ctx.createImageData(gw, gh);
  const px = img.data;
  const isFloat = values instanceof Float32Array;
  const n = Math.min(values.length, gw * gh);
  for (let k = 0; k < n; k++) {
    const v = isFloat ? Math.round(Math.max(0, Math.min(1, values[k])) * 255) : values[k];
    const t = 4 * v;
    px[4 * k] = table[t];
    px[4 * k + 1] = table[t + 1];
    px[4 * k + 2] = table[t + 2];
    px[4 * k + 3] = fadeLow ? Math.min(255, Math.round(v * 1.6)) : 255;
  }
  ctx.putImageData(img, 0, 0);
}

/**
 * Draw the grid canvas scaled over a rectangle, smoothly interpolated.
 * @param {CanvasRenderingContext2D} ctx
 * @param {HTMLCanvasElement | OffscreenCanvas} grid
 * @param {{x: number, y: number, w: number, h: number}} rect
 * @param {number} opacity 0..1
 */
export function drawGrid(ctx, grid, rect, opacity) {
  ctx.save();
  ctx.globalAlpha = opacity;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(grid, rect.x, rect.y, rect.w, rect.h);
  ctx.restore();
}

/**
 * A standalone heatmap image (no X-ray) into a canvas of any size: used by the method
 * grid, the detail panel and the overview.
 * @param {HTMLCanvasElement} canvas
 * @param {Float32Array} values @param {[number, number]} grid [gh, gw]
 * @param {Uint8ClampedArray} table
 * @param {CanvasImageSource | null} [under] an X-ray to draw beneath, or null
 * @param {number} [opacity]
 */
export function drawHeatmap(canvas, values, grid, table, under = null, opacity = 1) {
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  const rect = { x: 0, y: 0, w: canvas.width, h: canvas.height };
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, rect.w, rect.h);
  if (under) ctx.drawImage(under, 0, 0, rect.w, rect.h);
  const small = document.createElement("canvas");
  paintGrid(small, values, grid[1], grid[0], table);
  drawGrid(ctx, small, rect, under ? opacity : 1);
}
