// @ts-check
/**
 * DICOM export of the pinned token: the server builds the objects of every image of the
 * study (a Secondary Capture of the overlay, and for a DICOM source maps that reference it;
 * medviz_core/export/dicom.py) and sends them as one zip, which the browser downloads as `medviz-dicom-token<i>.zip`,
 * showing the notes that come with it (e.g. that the export has no patient identity).
 *
 * Owns the last export asked for on this page (one at a time), its download and the status
 * line under the drawer's head. Asking goes through analysis.js like every analysis.
 */

import { analyze, findJob, isWaiting, jobWords } from "./analysis.js";
import { downloadBlob } from "../export.js";
import { methodLabel } from "../format.js";

/**
 * @typedef {import("../wire/analysis-protocol.js").DicomResult} DicomResult
 * @typedef {{session: string, index: number, method: string, file: string, names: string[], notes: string[]}} Export
 */

/** @type {Export | null} */
let last = null;

/** @param {number} index */
export const dicomFileName = (index) => `medviz-dicom-token${index}.zip`;

/**
 * Ask for the DICOM export of token `index` with `method`; false when no socket can carry it.
 * @param {string} session @param {number} index @param {string} method
 */
export function exportDicom(session, index, method) {
  /** @type {Export} */
  const asked = { session, index, method, file: "", names: [], notes: [] };
  const id = analyze({ kind: "dicom", index, method }, (f) => {
    if (f.status !== "done" || !f.result || !("zip" in f.result)) return;
    const r = /** @type {DicomResult} */ (f.result);
    asked.file = dicomFileName(index);
    asked.names = r.names;
    asked.notes = r.notes;
    downloadBlob(new Blob([/** @type {BlobPart} */ (r.zip)], { type: "application/zip" }), asked.file);
  });
  if (id === null) return false;
  last = asked;
  return true;
}

/**
 * Whether an export is on its way (the button waits for it).
 * @param {import("../state.js").State} s
 */
export function dicomBusy(s) {
  if (!last || last.session !== s.start?.session) return false;
  const job = findJob(s.jobs, "dicom", last.index, { method: last.method });
  return isWaiting("dicom", last.index, last.method) || job?.status === "queued" || job?.status === "running";
}

/**
 * The status of the last export of this session: its state, then the file and its notes.
 * @param {HTMLElement} el @param {import("../state.js").State} s
 */
export function renderDicomStatus(el, s) {
  const shown = last && last.session === s.start?.session ? last : null;
  el.hidden = shown === null;
  if (!shown) return;
  const job = findJob(s.jobs, "dicom", shown.index, { method: shown.method });
  const words = shown.file
    ? `Downloaded ${shown.file}: ${shown.names.length} DICOM file${shown.names.length === 1 ? "" : "s"} (${shown.names.join(", ")})`
    : jobWords(job, isWaiting("dicom", shown.index, shown.method));
  const key = `${shown.index}|${shown.method}|${words}|${shown.notes.join("|")}`;
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  const line = document.createElement("p");
  line.className = "dicom-line";
  line.dataset.status = shown.file ? "done" : job?.status ?? "queued";
  line.textContent = `DICOM export of token #${shown.index} · ${methodLabel(shown.method)} · ${words}`;
  const notes = document.createElement("ul");
  notes.className = "dicom-notes";
  notes.replaceChildren(...shown.notes.map((n) => Object.assign(document.createElement("li"), { textContent: n })));
  el.replaceChildren(line, ...(shown.notes.length ? [notes] : []));
}
