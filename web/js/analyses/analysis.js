// @ts-check
/**
 * On-demand analysis jobs of the shown session: asking for one, following its status
 * (queued, running, done, cancelled, error), cancelling it, and finding results.
 *
 * Owns the bookkeeping between `analyze` requests and the frames that answer them: every
 * request gets its own id, and each `analysis` or `error` frame carrying an id belongs to
 * the request that asked, in whatever order the answers come (a job's method and boxes are
 * not repeated in its frames, so they are known from that request). Frames without an id
 * (a replay's recorded analyses) are kept by job. Also the gradient maps derived from done
 * jobs and the gradient button. The views of the results live in analysis-views.js.
 */

import { encodeAnalyze, encodeCancelAnalysis } from "../wire/analysis-protocol.js";
import { $, store } from "../page.js";

/**
 * @typedef {import("../wire/analysis-protocol.js").AnalysisFrame} AnalysisFrame
 * @typedef {import("../wire/analysis-protocol.js").AnalyzeRequest} AnalyzeRequest
 * @typedef {(f: AnalysisFrame) => void} Answered  called once with the request's final answer
 * @typedef {{request: AnalyzeRequest, answered: boolean, then: Answered | null}} Asked
 * @typedef {{method: string, boxes: string}} JobMeta
 */

const FINAL = ["done", "cancelled", "error"];
/** Ids differ across the page's sessions and tabs: a random prefix, then a counter. */
const PREFIX = Math.random().toString(36).slice(2, 8);
let counter = 0;

/** @type {(bytes: Uint8Array) => boolean} */
let send = () => false;
/** @type {Map<string, Asked>} every request of this session, by id */
let asked = new Map();
/** @type {Record<string, JobMeta>} */
let meta = {};

/** @type {(kind: string) => string} why a kind cannot be asked on this page ("" where it can) */
let unavailable = () => "";

/** The offline player: no analysis can be asked, and each kind's button says why. @param {(kind: string) => string} fn */
export function setUnavailable(fn) {
  unavailable = fn;
}

/** @param {string} kind @returns {string} why it cannot be asked here, "" where it can */
export function whyUnavailable(kind) {
  return unavailable(kind);
}

/** @param {(bytes: Uint8Array) => boolean} fn sends on a socket that can answer, false when none */
export function setSender(fn) {
  send = fn;
}

/** A new session: forget requests and jobs of the previous one. */
export function resetJobs() {
  asked = new Map();
  meta = {};
}

/** @param {import("../wire/analysis-protocol.js").Box[] | undefined} boxes */
export const boxesKey = (boxes) => JSON.stringify(boxes ?? []);

/** @returns {string} a new request id */
function nextId() {
  counter += 1;
  return `${PREFIX}-${counter}`;
}

/**
 * Ask for an analysis; its id, or null when no socket can carry it.
 * @param {AnalyzeRequest} r @param {Answered} [then] told the final answer (done, cancelled or failed)
 * @returns {string | null}
 */
export function analyze(r, then) {
  const id = nextId();
  if (!send(encodeAnalyze(r, id))) return null;
  asked.set(id, { request: r, answered: false, then: then ?? null });
  store.set({ jobs: { ...store.state.jobs } });
  return id;
}

/**
 * An error frame answering request `id`: it shows as a failed job of that request's kind
 * and token; a `busy` refusal (too many analyses waiting) says so, to ask again later.
 * @param {string} id @param {string} code @param {string} message
 * @returns {boolean} whether a request of this page took the error
 */
export function failRequest(id, code, message) {
  const a = asked.get(id);
  if (!a) return false;
  const { request: r } = a;
  a.answered = true;
  const job = `refused-${id}`;
  meta[job] = { method: r.method ?? "", boxes: boxesKey(r.boxes) };
  const said = code === "busy" ? `busy: ${message}` : message;
  /** @type {AnalysisFrame} */
  const f = { type: "analysis", job, kind: r.kind, index: r.index, status: "error", message: said, result: null, id };
  store.set({ jobs: { ...store.state.jobs, [job]: f } });
  finish(a, f);
  return true;
}

/** @param {Asked} a @param {AnalysisFrame} f */
function finish(a, f) {
  const then = a.then;
  a.then = null;
  then?.(f);
}

/** @param {string} job */
export function cancelJob(job) {
  send(encodeCancelAnalysis(job, nextId()));
}

/** @param {AnalysisFrame} f */
export function onAnalysisFrame(f) {
  const a = f.id !== null ? asked.get(f.id) : undefined;
  if (a) {
    a.answered = true;
    meta[f.job] = { method: a.request.method ?? "", boxes: boxesKey(a.request.boxes) };
  } else meta[f.job] ??= { method: "", boxes: boxesKey([]) };
  if (f.result && "method" in f.result) meta[f.job].method = String(f.result.method);
  store.set({ jobs: { ...store.state.jobs, [f.job]: f } });
  if (a && FINAL.includes(f.status)) finish(a, f);
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
 * Whether a request of this kind for this token (any token when null; and this method, when
 * given) is still unanswered.
 * @param {string} kind @param {number | null} index @param {string} [method]
 */
export function isWaiting(kind, index, method) {
  for (const { request: r, answered } of asked.values()) {
    const same = (index === null || r.index === index) && (method === undefined || r.method === method);
    if (!answered && r.kind === kind && same) return true;
  }
  return false;
}

/** @type {[Record<string, AnalysisFrame> | null, Record<number, import("../wire/fields.js").QMap[]>]} */
let memo = [null, {}];

/**
 * Gradient maps per token index (one per image) from the done gradient jobs.
 * @param {Record<string, AnalysisFrame>} jobs @returns {Record<number, import("../wire/fields.js").QMap[]>}
 */
export function gradientMaps(jobs) {
  if (memo[0] === jobs) return memo[1];
  /** @type {Record<number, import("../wire/fields.js").QMap[]>} */
  const out = {};
  for (const f of Object.values(jobs)) {
    if (f.kind === "gradient" && f.status === "done" && f.result && "maps" in f.result) {
      out[f.index] = /** @type {import("../wire/analysis-protocol.js").GradientResult} */ (f.result).maps;
    }
  }
  memo = [jobs, out];
  return out;
}

/** Words for a job's state. @param {AnalysisFrame | null} f @param {boolean} waiting */
export function jobWords(f, waiting) {
  if (!f) return waiting ? "requested…" : "";
  if (f.status === "error") return `failed: ${f.message || "no detail given"}`;
  if (f.status === "cancelled") return "cancelled";
  return f.status === "done" ? "done" : f.status === "running" ? "running…" : "queued…";
}

/**
 * The gradient button under the method grid, for the shown token.
 * @param {import("../state.js").State} s @param {number} i
 */
export function renderGradientBox(s, i) {
  const run = /** @type {HTMLButtonElement} */ ($("gradient-run"));
  const status = $("gradient-status");
  const cancel = $("gradient-cancel");
  const step = i >= 0 ? s.steps[i] : undefined;
  const job = step ? findJob(s.jobs, "gradient", i) : null;
  const waiting = step ? isWaiting("gradient", i) : false;
  const active = job?.status === "queued" || job?.status === "running";
  const why = unavailable("gradient");
  run.disabled = !step || step.special || waiting || active || job?.status === "done" || why !== "";
  if (why) run.title = why;
  run.dataset.index = String(i);
  status.textContent = step ? jobWords(job, waiting) : "";
  status.dataset.status = job?.status ?? (waiting ? "queued" : "");
  cancel.hidden = !active;
  cancel.dataset.job = job?.job ?? "";
}
