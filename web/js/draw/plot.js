// @ts-check
/**
 * A small line plot on a canvas: axes 0..1 on x, 0..max on y, several named curves with
 * a legend. Owns only this drawing; the faithfulness view decides what to plot.
 */

/**
 * @typedef {{label: string, xs: number[], ys: number[], colour: string, dashed?: boolean}} Series
 */

/**
 * @param {HTMLCanvasElement} canvas drawn at its own pixel size
 * @param {{title: string, xLabel: string, yLabel: string, series: Series[]}} plot
 */
export function drawPlot(canvas, plot) {
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  const w = canvas.width;
  const h = canvas.height;
  const pad = { l: 52, r: 14, t: 30, b: 40 };
  ctx.fillStyle = "#121821";
  ctx.fillRect(0, 0, w, h);
  const top = Math.max(1e-9, ...plot.series.flatMap((s) => s.ys)) * 1.05;
  const x = (/** @type {number} */ v) => pad.l + v * (w - pad.l - pad.r);
  const y = (/** @type {number} */ v) => h - pad.b - (v / top) * (h - pad.t - pad.b);
  ctx.strokeStyle = "#253041";
  ctx.fillStyle = "#8d9cb0";
  ctx.font = "12px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = (top / 1.05) * (k / 4);
    ctx.beginPath();
    ctx.moveTo(pad.l, y(v));
    ctx.lineTo(w - pad.r, y(v));
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(v.toPrecision(2), pad.l - 6, y(v));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillText(`${k * 25}%`, x(k / 4), h - pad.b + 6);
  }
  ctx.fillText(plot.xLabel, (pad.l + w - pad.r) / 2, h - 16);
  ctx.save();
  ctx.translate(14, (pad.t + h - pad.b) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(plot.yLabel, 0, -6);
  ctx.restore();
  ctx.textAlign = "left";
  ctx.fillStyle = "#e6edf5";
  ctx.font = "600 13px system-ui, sans-serif";
  ctx.fillText(plot.title, pad.l, 8);
  plot.series.forEach((s, k) => {
    ctx.strokeStyle = s.colour;
    ctx.lineWidth = 2.5;
    ctx.setLineDash(s.dashed ? [6, 4] : []);
    ctx.beginPath();
    s.xs.forEach((xv, i) => (i === 0 ? ctx.moveTo(x(xv), y(s.ys[i])) : ctx.lineTo(x(xv), y(s.ys[i]))));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = s.colour;
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.fillText(s.label, w - pad.r, 8 + 16 * k);
  });
  canvas.dataset.curves = String(plot.series.length);
}
