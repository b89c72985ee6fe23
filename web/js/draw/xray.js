// @ts-check
/**
 * The X-ray underneath the heatmap: decode once, then window/level it.
 *
 * Owns turning image bytes (PNG/JPEG from the start frame, or a local file before a
 * session starts) into a greyscale canvas, and the window/level transfer function a
 * radiologist expects: intensities inside [level - window/2, level + window/2] are spread
 * over black..white, the rest clipped. Heatmaps are drawn elsewhere.
 */

/** @typedef {{width: number, height: number, luma: Uint8ClampedArray, canvas: HTMLCanvasElement}} XRay */

/**
 * Decode image bytes into luminance values and a canvas that will hold the windowed image.
 * @param {Blob} blob @returns {Promise<XRay>}
 */
export async function loadXRay(blob) {
  const bitmap = await createImageBitmap(blob);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d", { willReadFrequently: true }));
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const luma = new Uint8ClampedArray(canvas.width * canvas.height);
  for (let k = 0; k < luma.length; k++) {
    luma[k] = Math.round(0.299 * rgba[4 * k] + 0.587 * rgba[4 * k + 1] + 0.114 * rgba[4 * k + 2]);
  }
  const xray = { width: canvas.width, height: canvas.height, luma, canvas };
  applyWindow(xray, 255, 128, false);
  return xray;
}

/**
 * The 256-entry window/level lookup table.
 * @param {number} window width in grey levels (1..512) @param {number} level centre (0..255)
 * @param {boolean} invert
 * @returns {Uint8ClampedArray}
 */
export function windowTable(window, level, invert) {
  const lut = new Uint8ClampedArray(256);
  const w = Math.max(1, window);
  const low = level - w / 2;
  for (let v = 0; v < 256; v++) {
    const y = Math.round(((v - low) / w) * 255);
    lut[v] = invert ? 255 - Math.max(0, Math.min(255, y)) : y;
  }
  return lut;
}

/**
 * Redraw the X-ray's canvas through a window/level.
 * @param {XRay} xray @param {number} window @param {number} level @param {boolean} invert
 */
export function applyWindow(xray, window, level, invert) {
  const lut = windowTable(window, level, invert);
  const ctx = /** @type {CanvasRenderingContext2D} */ (xray.canvas.getContext("2d"));
  const img = ctx.createImageData(xray.width, xray.height);
  const px = img.data;
  for (let k = 0; k < xray.luma.length; k++) {
    const g = lut[xray.luma[k]];
    px[4 * k] = g;
    px[4 * k + 1] = g;
    px[4 * k + 2] = g;
    px[4 * k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
