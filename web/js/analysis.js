// @ts-check
/**
 * On-demand analysis jobs of the shown session: asking for one, following its status
 * (queued, running, done, cancelled, error), cancelling it, and finding results.
 *
 * Owns the bookkeeping between `analyze` requests and the `analysis` frames that answer
 * them (a job's method and boxes are not repeated in its frames, so each new job id is
 * matched to the oldest unanswered request of its kind and token), the gradient maps
 * derived from done jobs, and the gradient button. Frames recorded in a replay arrive the
 * same way as live ones. The views of the results live in analysis-views.js.
 */

import { encodeAnalyze, encodeCancelAnalysis } from "./analysis-protocol.js";
import { $, store } from "./page.js";

/**
 * @typedef {import("./analysis-protocol.js").AnalysisFrame} AnalysisFrame
 * @typedef {import("./analysis-protocol.js").AnalyzeRequest} AnalyzeRequest
 * @typedef {{method: string, boxes: string}} JobMeta
 */

/** @type {(bytes: Uint8Array) => boolean} */
let send = () => false;
/** @type {AnalyzeRequest[]} requests not yet answered, oldest first */
let waiting = [];
/** @type {Record<string, JobMeta>} */
let meta = {};

/** @param {(bytes: Uint8Array) => boolean} fn sends on a socket that can answer, false when none */
export function setSender(fn) {
  send = fn;
}

/** A new session: forget requests and jobs of the previous one. */
export function resetJobs() {
  waiting = [];
  meta = {};
}

/** @param {import("./analysis-protocol.js").Box[] | undefined} boxes */
export const boxesKey = (boxes) => JSON.stringify(boxes ?? []);

/**
 * Ask for an analysis; false when no socket can carry it.
 * @param {AnalyzeRequest} r
 */
export function analyze(r) {
  if (!send(encodeAnalyze(r))) return false;
  waiting.push(r);
  store.set({ jobs: { ...store.state.jobs } });
  return true;
}

let failures = 0;

/**
 * An error frame while requests wait: the server refused the oldest one (error frames
 * name no job, and come in request order), so it shows as a failed job of its kind and
 * token; a `busy` refusal (too many analyses waiting) says so, to ask again later.
 * @param {string} message @param {string} [code]
 * @returns {boolean} whether a waiting request took the error
 */
export function failOldest(message, code = "") {
  const r = waiting.shift();
  if (!r) return false;
  failures += 1;
  const job = `refused-${failures}`;
  meta[job] = { method: r.method ?? "", boxes: boxesKey(r.boxes) };
  const said = code === "busy" ? `busy: ${message}` : message;
  store.set({ jobs: { ...store.state.jobs, [job]: { type: "analysis", job, kind: r.kind, index: r.index, status: "error", message: said, result: null } } });
  return true;
}

/** @param {string} job */
export function cancelJob(job) {
  send(encodeCancelAnalysis(job));
}

/** @param {AnalysisFrame} f */
export function onAnalysisFrame(f) {
  if (!meta[f.job]) {
    const k = waiting.findIndex((r) => r.kind === f.kind && r.index === f.index);
    const r = k >= 0 ? waiting.splice(k, 1)[0] : null;
    meta[f.job] = { method: r?.method ?? "", boxes: boxesKey(r?.boxes) };
  }
  if (f.kind === "faithfulness" && f.result && "method" in f.result) meta[f.job].method = String(f.result.method);
  store.set({ jobs: { ...store.state.jobs, [f.job]: f } });
}

/**
 * The newest job of a kind for a token, optionally only those with a method / boxes.
 * @param {Record<string, AnalysisFrame>} jobs @param {string} kind @param {number} index
 * @param {{method?: string, boxes?: string, done?: boolean}} [want]
 * @returns {AnalysisFrame | null}
 */
export function findJob(jobs, kind, index, want = {}) {
  let found = null;
  for (const f of Object.values(jobs)) {
    if (f.kind !== kind || f.index !== index) continue;
    const m = meta[f.job];
    if (want.method !== undefined && m && m.method !== want.method) continue;
    if (want.boxes !== undefined && m && m.boxes !== want.boxes) continue;
    if (want.done && f.status !== "done") continue;
    found = f;
  }
  return found;
}

/**
 * Whether a request of this kind for this token is still unanswered.
 * @param {string} kind @param {number} index
 */
export function isWaiting(kind, index) {
  return waiting.some((r) => r.kind === kind && r.index === index);
}

/** @type {[Record<string, AnalysisFrame> | null, Record<number, import("./wire.js").QMap[]>]} */
let memo = [null, {}];

/**
 * Gradient maps per token index (one per image) from the done gradient jobs.
 * @param {Record<string, AnalysisFrame>} jobs @returns {Record<number, import("./wire.js").QMap[]>}
 */
export function gradientMaps(jobs) {
  if (memo[0] === jobs) return memo[1];
  /** @type {Record<number, import("./wire.js").QMap[]>} */
  const out = {};
  for (const f of Object.values(jobs)) {
    if (f.kind === "gradient" && f.status === "done" && f.result && "maps" in f.result) out[f.index] = /** @type {any} */ (f.result).maps;
  }
  memo = [jobs, out];
  return out;
}

/** Words for a job's state. @param {AnalysisFrame | null} f @param {boolean} asked */
export function jobWords(f, asked) {
  if (!f) return asked ? "requested…" : "";
  if (f.status === "error") return `failed: ${f.message || "no detail given"}`;
  if (f.status === "cancelled") return "cancelled";
  return f.status === "done" ? "done" : f.status === "running" ? "running…" : "queued…";
}

/**
 * The gradient button under the method grid, for the shown token.
 * @param {import("./state.js").State} s @param {number} i
 */
export function renderGradientBox(s, i) {
  const run = /** @type {HTMLButtonElement} */ ($("gradient-run"));
  const status = $("gradient-status");
  const cancel = $("gradient-cancel");
  const step = i >= 0 ? s.steps[i] : undefined;
  const job = step ? findJob(s.jobs, "gradient", i) : null;
  const asked = step ? isWaiting("gradient", i) : false;
  const active = job?.status === "queued" || job?.status === "running";
  run.disabled = !step || step.special || asked || active || job?.status === "done";
  run.dataset.index = String(i);
  status.textContent = step ? jobWords(job, asked) : "";
  status.dataset.status = job?.status ?? (asked ? "queued" : "");
  cancel.hidden = !active;
  cancel.dataset.job = job?.job ?? "";
}
