// @ts-check
/**
 * Pieces every analysis view shares: the job bar (a run button, the job's status words
 * and a cancel button while it is queued or running) and a labelled select.
 */

import { cancelJob, jobWords, whyUnavailable } from "./analysis.js";

/**
 * A job's bar: the run button, the status words and a cancel button while it runs.
 * @param {string} label @param {import("../wire/analysis-protocol.js").AnalysisFrame | null} job
 * @param {boolean} asked a request is waiting for its first answer @param {() => void} run
 * @param {string} kind the analysis kind it asks for (an offline page says why it cannot)
 * @returns {HTMLElement}
 */
export function jobBar(label, job, asked, run, kind) {
  const bar = document.createElement("div");
  bar.className = "job-box";
  const active = asked || job?.status === "queued" || job?.status === "running";
  const go = document.createElement("button");
  go.className = "primary run";
  go.textContent = label;
  const why = whyUnavailable(kind);
  go.disabled = active || why !== "";
  if (why) go.title = why;
  go.addEventListener("click", run);
  const status = document.createElement("span");
  status.className = "job-status";
  status.dataset.status = job?.status ?? (asked ? "queued" : "");
  status.textContent = jobWords(job, asked);
  bar.append(go, status);
  if (job && (job.status === "queued" || job.status === "running")) {
    const stop = document.createElement("button");
    stop.className = "ghost small cancel";
    stop.textContent = "Cancel";
    stop.addEventListener("click", () => cancelJob(job.job));
    bar.append(stop);
  }
  return bar;
}

/**
 * A labelled select.
 * @param {string} label @param {[string, string][]} options value, text @param {string} value
 * @param {(v: string) => void} change @returns {HTMLLabelElement}
 */
export function selectField(label, options, value, change) {
  const wrap = document.createElement("label");
  wrap.className = "field inline";
  wrap.append(label);
  const sel = document.createElement("select");
  sel.replaceChildren(...options.map(([v, t]) => new Option(t, v, v === value, v === value)));
  sel.addEventListener("change", () => change(sel.value));
  wrap.append(sel);
  return wrap;
}
