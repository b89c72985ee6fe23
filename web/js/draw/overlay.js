// @ts-check
/**
 * Vector marks drawn over the image: region contours with zone names (placed so that no
 * two overlap), the focus trail of the peak cell, and the radiological side markers.
 *
 * Owns only these pure drawing functions (data + rectangle in, strokes out) and where the
 * region labels go (`placeLabels`; stage.js shows them as page elements on screen). Zone names
 * come from the server in radiological convention: the patient's right is on the image's
 * left, which is why the side markers read "R" on the left edge.
 */

/** @typedef {{x: number, y: number, w: number, h: number}} Rect */

/** @typedef {{text: string, x: number, y: number, w: number, h: number, size: number}} Label  a placed label's box */

/** @param {number} size font size in canvas pixels */
export const labelFont = (size) => `600 ${size}px system-ui, sans-serif`;

/** @param {import("../wire/protocol.js").Region} r */
export const regionText = (r) => `${r.zone} · ${Math.round(r.mass * 100)}%`;

/**
 * Where each region's "zone · mass" label goes: the first of a few spots around its box
 * (above its top-left corner, inside it, below it) that lies inside the picture and
 * overlaps no label placed before; a label with no such spot is dropped. Regions come most
 * mass first, so the largest keep their labels.
 * @param {import("../wire/protocol.js").Region[]} regions @param {Rect} rect @param {number} scale
 * @param {(text: string, size: number) => number} measure a text's width at a font size
 * @returns {Label[]}
 */
export function placeLabels(regions, rect, scale, measure) {
  const size = 12 * scale;
  const pad = 0.3 * size;
  const h = 1.4 * size;
  /** @type {Label[]} */ const placed = [];
  for (const r of regions) {
    const text = regionText(r);
    const w = measure(text, size) + 2 * pad;
    const bx = rect.x + r.box[0] * rect.w;
    const by = rect.y + r.box[1] * rect.h;
    const bw = r.box[2] * rect.w;
    const bh = r.box[3] * rect.h;
    const spots = [[bx, by - h - 2 * scale], [bx + 3 * scale, by + 3 * scale], [bx, by + bh + 2 * scale], [bx + bw - w, by - h - 2 * scale], [bx + bw - w, by + bh + 2 * scale]];
    for (const [x0, y0] of spots) {
      const x = Math.max(rect.x, Math.min(x0, rect.x + rect.w - w));
      const y = Math.max(rect.y, Math.min(y0, rect.y + rect.h - h));
      if (w > rect.w || h > rect.h) break;
      const clear = placed.every((o) => x + w <= o.x || o.x + o.w <= x || y + h <= o.y || o.y + o.h <= y);
      if (clear) {
        placed.push({ text, x, y, w, h, size });
        break;
      }
    }
  }
  return placed;
}

/**
 * @param {CanvasRenderingContext2D} ctx @param {Label} l
 */
function drawLabel(ctx, l) {
  ctx.font = labelFont(l.size);
  ctx.textBaseline = "middle";
  ctx.fillStyle = "rgba(8, 12, 18, 0.78)";
  ctx.fillRect(l.x, l.y, l.w, l.h);
  ctx.fillStyle = "#f4f7fb";
  ctx.fillText(l.text, l.x + 0.3 * l.size, l.y + l.h / 2);
}

/**
 * Region polygons and their "zone · mass" labels (placeLabels: never overlapping).
 * @param {CanvasRenderingContext2D} ctx @param {import("../wire/protocol.js").Region[]} regions
 * @param {Rect} rect @param {number} scale CSS-to-canvas pixel ratio
 * @param {boolean} [labels] false: outlines only, the placed labels returned for the page to show
 * @returns {Label[]}
 */
export function drawRegions(ctx, regions, rect, scale, labels = true) {
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
  });
  const placed = placeLabels(regions, rect, scale, (text, size) => {
    ctx.font = labelFont(size);
    return ctx.measureText(text).width;
  });
  if (labels) for (const l of placed) drawLabel(ctx, l);
  ctx.restore();
  return placed;
}

/**
 * The peak cell of the last tokens, kept subtle: small dots, oldest faintest, the newest a
 * ring; thin joins only between peaks near each other (a jump across the chest is not drawn
 * as a line).
 * @param {CanvasRenderingContext2D} ctx @param {[number, number][]} peaks (row, col), oldest first
 * @param {[number, number]} grid [gh, gw] @param {Rect} rect @param {number} scale
 */
export function drawTrail(ctx, peaks, grid, rect, scale) {
  if (peaks.length === 0) return;
  const [gh, gw] = grid;
  const pt = (/** @type {[number, number]} */ p) => [rect.x + ((p[1] + 0.5) / gw) * rect.w, rect.y + ((p[0] + 0.5) / gh) * rect.h];
  const near = 0.2 * Math.hypot(rect.w, rect.h);
  ctx.save();
  ctx.lineCap = "round";
  for (let k = 1; k < peaks.length; k++) {
    const [x0, y0] = pt(peaks[k - 1]);
    const [x1, y1] = pt(peaks[k]);
    if (Math.hypot(x1 - x0, y1 - y0) > near) continue;
    ctx.strokeStyle = `rgba(255, 214, 102, ${0.1 + 0.35 * (k / peaks.length)})`;
    ctx.lineWidth = 1.25 * scale;
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
  }
  peaks.forEach((p, k) => {
    const [x, y] = pt(p);
    const last = k === peaks.length - 1;
    ctx.beginPath();
    ctx.arc(x, y, (last ? 5 : 2.25) * scale, 0, Math.PI * 2);
    if (last) {
      ctx.strokeStyle = "rgba(0, 0, 0, 0.6)";
      ctx.lineWidth = 3 * scale;
      ctx.stroke();
      ctx.strokeStyle = "#ffd666";
      ctx.lineWidth = 1.5 * scale;
      ctx.stroke();
    } else {
      ctx.fillStyle = `rgba(255, 214, 102, ${0.15 + 0.45 * (k / peaks.length)})`;
      ctx.fill();
    }
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
