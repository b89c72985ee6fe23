// @ts-check
/**
 * Saving files: a canvas downloaded as a PNG, or bytes the server made (a DICOM export's
 * zip) downloaded under a name. No drawing happens here.
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
