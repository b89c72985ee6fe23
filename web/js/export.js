// @ts-check
/**
 * Saving files: a canvas downloaded as a PNG, or bytes the server made (a DICOM export's
 * zip) downloaded under a name; and the caption band every exported picture carries (what
 * it shows, and what the model is).
 */

/**
 * @param {Blob} blob @param {string} filename characters other than letters, digits, "." and "-" become "_"
 */
export function downloadBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename.replace(/[^\w.-]+/g, "_");
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * @param {HTMLCanvasElement} canvas @param {string} filename
 * @returns {Promise<void>}
 */
export function downloadPng(canvas, filename) {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => {
      if (!blob) {
        reject(new Error("the picture could not be encoded as PNG"));
        return;
      }
      downloadBlob(blob, filename);
      resolve();
    }, "image/png");
  });
}

/**
 * The picture with a caption band below it: a line saying what it shows, then the model's
 * note (format.js modelNote), the stand-in's in amber.
 * @param {HTMLCanvasElement} picture @param {string} title @param {string} note @param {boolean} standIn
 * @returns {HTMLCanvasElement}
 */
export function captioned(picture, title, note, standIn) {
  const size = Math.max(13, Math.round(picture.width / 70));
  const pad = Math.round(size * 0.7);
  const out = document.createElement("canvas");
  const ctx = /** @type {CanvasRenderingContext2D} */ (out.getContext("2d"));
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  const lines = [...wrap(ctx, title, picture.width - 2 * pad)];
  ctx.font = `${size}px system-ui, sans-serif`;
  const notes = [...wrap(ctx, note, picture.width - 2 * pad)];
  const line = Math.round(size * 1.4);
  out.width = picture.width;
  out.height = picture.height + pad * 2 + line * (lines.length + notes.length);
  ctx.fillStyle = "#0a0d12";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(picture, 0, 0);
  ctx.textBaseline = "top";
  let y = picture.height + pad;
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  ctx.fillStyle = "#e6edf5";
  for (const text of lines) { ctx.fillText(text, pad, y); y += line; }
  ctx.font = `${size}px system-ui, sans-serif`;
  ctx.fillStyle = standIn ? "#ffd666" : "#8d9cb0";
  for (const text of notes) { ctx.fillText(text, pad, y); y += line; }
  return out;
}

/**
 * Words broken into lines no wider than `width` at the context's font.
 * @param {CanvasRenderingContext2D} ctx @param {string} text @param {number} width
 * @returns {Generator<string>}
 */
function* wrap(ctx, text, width) {
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? `${line} ${word}` : word;
    if (line && ctx.measureText(next).width > width) {
      yield line;
      line = word;
    } else line = next;
  }
  if (line) yield line;
}
