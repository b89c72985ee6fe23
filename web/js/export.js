// @ts-check
/**
 * Saving pictures: a canvas downloaded as a PNG file. No drawing happens here.
 */

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
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = filename.replace(/[^\w.-]+/g, "_");
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      resolve();
    }, "image/png");
  });
}
