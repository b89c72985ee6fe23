// @ts-check
/**
 * Vector marks drawn over the image: region contours with zone names, the focus trail
 * of the peak cell, and the radiological side markers.
 *
 * Owns only these pure drawing functions (data + rectangle in, strokes out). Zone names
 * come from the server in radiological convention: the patient's right is on the image's
 * left, which is why the side markers read "R" on the left edge.
 */

/** @typedef {{x: number, y: number, w: number, h: number}} Rect */

/**
 * @param {CanvasRenderingContext2D} ctx @param {string} text @param {number} x @param {number} y
 * @param {number} size font size in CSS pixels (times the canvas scale)
 */
function label(ctx, text, x, y, size) {
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  const w = ctx.measureText(text).width;
  ctx.fillStyle = "rgba(8, 12, 18, 0.78)";
  ctx.fillRect(x - size * 0.3, y - size * 0.2, w + size * 0.6, size * 1.4);
  ctx.fillStyle = "#f4f7fb";
  ctx.fillText(text, x, y);
}

/**
 * Region polygons and a "zone · mass" label at each box's top-left corner.
 * @param {CanvasRenderingContext2D} ctx @param {import("./protocol.js").Region[]} regions
 * @param {Rect} rect @param {number} scale CSS-to-canvas pixel ratio
 */
export function drawRegions(ctx, regions, rect, scale) {
  ctx.save();
  regions.forEach((r, k) => {
    ctx.beginPath();
    for (let i = 0; i + 1 < r.poly.length; i += 2) {
      const x = rect.x + r.poly[i] * rect.w;
      const y = rect.y + r.poly[i + 1] * rect.h;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.closePath();
    ctx.lineJoin = "round";
    ctx.strokeStyle = "rgba(0, 0, 0, 0.65)";
    ctx.lineWidth = 4 * scale;
    ctx.stroke();
    ctx.strokeStyle = k === 0 ? "#ffffff" : "rgba(255, 255, 255, 0.75)";
    ctx.setLineDash(k === 0 ? [] : [6 * scale, 4 * scale]);
    ctx.lineWidth = 1.75 * scale;
    ctx.stroke();
    ctx.setLineDash([]);
    const bx = rect.x + r.box[0] * rect.w;
    const by = rect.y + r.box[1] * rect.h;
    const text = `${r.zone} · ${Math.round(r.mass * 100)}%`;
    label(ctx, text, Math.min(bx + 3 * scale, rect.x + rect.w - 140 * scale), Math.max(rect.y + 2 * scale, by - 18 * scale), 12 * scale);
  });
  ctx.restore();
}

/**
 * The peak cell of the last tokens, oldest faint, newest bright, joined in order.
 * @param {CanvasRenderingContext2D} ctx @param {[number, number][]} peaks (row, col), oldest first
 * @param {[number, number]} grid [gh, gw] @param {Rect} rect @param {number} scale
 */
export function drawTrail(ctx, peaks, grid, rect, scale) {
  if (peaks.length === 0) return;
  const [gh, gw] = grid;
  const pt = (/** @type {[number, number]} */ p) => [rect.x + ((p[1] + 0.5) / gw) * rect.w, rect.y + ((p[0] + 0.5) / gh) * rect.h];
  ctx.save();
  ctx.lineCap = "round";
  for (let k = 1; k < peaks.length; k++) {
    const [x0, y0] = pt(peaks[k - 1]);
    const [x1, y1] = pt(peaks[k]);
    ctx.strokeStyle = `rgba(255, 214, 102, ${0.15 + 0.7 * (k / peaks.length)})`;
    ctx.lineWidth = 2 * scale;
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
  }
  peaks.forEach((p, k) => {
    const [x, y] = pt(p);
    const last = k === peaks.length - 1;
    ctx.beginPath();
    ctx.arc(x, y, (last ? 6 : 3) * scale, 0, Math.PI * 2);
    ctx.fillStyle = last ? "#ffd666" : `rgba(255, 214, 102, ${0.25 + 0.6 * (k / peaks.length)})`;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.7)";
    ctx.lineWidth = 1.5 * scale;
    ctx.fill();
    ctx.stroke();
  });
  ctx.restore();
}

/**
 * "R" on the image's left, "L" on its right: the patient's sides on a frontal film.
 * @param {CanvasRenderingContext2D} ctx @param {Rect} rect @param {number} scale
 */
export function drawSideMarkers(ctx, rect, scale) {
  ctx.save();
  ctx.font = `700 ${14 * scale}px system-ui, sans-serif`;
  ctx.textBaseline = "middle";
  ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
  ctx.shadowColor = "rgba(0, 0, 0, 0.9)";
  ctx.shadowBlur = 3 * scale;
  const y = rect.y + rect.h / 2;
  ctx.textAlign = "left";
  ctx.fillText("R", rect.x + 8 * scale, y);
  ctx.textAlign = "right";
  ctx.fillText("L", rect.x + rect.w - 8 * scale, y);
  ctx.restore();
}
