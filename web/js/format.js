// @ts-check
/**
 * Words and numbers as the user reads them: method names, token text, percentages, times,
 * and the plain-language meaning of server error codes. No DOM, no state.
 */

/** @type {Record<string, string>} */
export const METHOD_LABELS = {
  raw: "Raw",
  layer_weighted: "Layer-weighted",
  head_importance: "Head importance",
  flow: "Flow",
  rollout: "Rollout",
  consensus: "Consensus",
  gradient: "Gradient",
};

/** @type {Record<string, string>} */
export const METHOD_HINTS = {
  raw: "Last layer, mean over heads",
  layer_weighted: "All layers, later layers weigh more",
  head_importance: "Last layer, focused heads weigh more",
  flow: "Layer-decay attention flow",
  rollout: "Exact attention rollout through all layers",
  consensus: "Mean of the four normalised methods",
  gradient: "Chefer gradient relevancy (on demand)",
};

/** @param {string} method */
export const methodLabel = (method) => METHOD_LABELS[method] ?? method;

/** @param {number} x 0..1 @param {number} [digits] */
export const pct = (x, digits = 0) => `${(x * 100).toFixed(digits)}%`;

/** @param {number} ms */
export const millis = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);

const SUPERSCRIPT = /** @type {Record<string, string>} */ ({ "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" });

/**
 * Numbers written in one readable unit: all scaled by the power of ten of the largest, the
 * unit (" ×10⁻⁵") returned once; no unit when the largest lies in 0.001..1000. Decimals for
 * three significant digits on the largest, so "3.17e-7 … 1.15e-5" reads "0.03 … 1.15 ×10⁻⁵"
 * and 0.002 … 0.0123 reads "0.0020 … 0.0123".
 * @param {number[]} values @returns {{texts: string[], unit: string}}
 */
export function inOneUnit(values) {
  const top = Math.max(0, ...values.map((v) => Math.abs(v)).filter(Number.isFinite));
  if (!(top > 0)) return { texts: values.map((v) => (v === 0 ? "0" : String(v))), unit: "" };
  const mag = Math.floor(Math.log10(top));
  const exp = mag >= -3 && mag <= 2 ? 0 : mag;  // 0.001 .. 999 read as they are
  const k = 10 ** -exp;
  const digits = Math.max(0, 2 - (mag - exp));  // three significant digits on the largest
  const unit = exp === 0 ? "" : ` ×10${String(exp).replace(/./g, (ch) => SUPERSCRIPT[ch] ?? ch)}`;
  return { texts: values.map((v) => (v * k).toFixed(digits)), unit };
}

/**
 * A colour legend's two ends in one unit (inOneUnit), written once on the high end.
 * @param {number} lo @param {number} hi @returns {[string, string]}
 */
export function legendEnds(lo, hi) {
  const { texts, unit } = inOneUnit([lo, hi]);
  return [texts[0], `${texts[1]}${unit}`];
}

/**
 * "1 token", "2 tokens": a count and its noun, singular for exactly one.
 * @param {number} n @param {string} noun @param {string} [many] the plural when not noun + "s"
 */
export const plural = (n, noun, many = `${noun}s`) => `${n} ${n === 1 ? noun : many}`;

/**
 * A token's text made visible: a whitespace-only token as marks (↵ per newline, · per
 * space, → per tab), newlines inside words as ↵, an empty piece as ∅.
 * @param {string} text
 */
export function visibleToken(text) {
  if (text === "") return "∅";
  if (/^\s+$/.test(text)) return text.replace(/\r?\n/g, "↵").replace(/\t/g, "→").replace(/[^↵→]/g, "·");
  return text.replace(/\r?\n/g, "↵");
}

/** What a stand-in model's views say (medviz_core/types.py STAND_IN_NOTE). */
export const STAND_IN_NOTE = "Demo model: untrained vision — the heatmaps show the mechanics of attention, not medicine; the text is not a report.";
/** The smaller standing note of a real model (types.py REAL_MODEL_NOTE). */
export const REAL_MODEL_NOTE = "Model attention, not a diagnosis.";

/** @param {boolean} standIn @returns {string} the note a view of this model carries */
export const modelNote = (standIn) => (standIn ? STAND_IN_NOTE : REAL_MODEL_NOTE);

/** The server's refusal of the PACS to a page without the PACS key (guard/security.py NO_PACS_KEY): shown as is,
 * never as a missing access token. */
export const NO_PACS_KEY = "this link does not open the PACS: ask the presenter for the operator link";

/** @type {Record<string, string>} */
const ERROR_WORDS = {
  bad_image: "The image could not be read. Use a PNG, JPEG or DICOM chest X-ray.",
  bad_request: "The server did not accept the request.",
  bad_frame: "The server could not read a message from this page.",
  busy: "The model is busy and its queue is full. Try again in a minute.",
  unauthorized: "Access denied: this server needs a valid access token in the link (?token=…).",
  not_found: "That session or recording does not exist (or has finished and was not recorded).",
  model_load: "The model could not be loaded on the server.",
  too_large: "The file or request is too large for this server.",
  internal: "The server hit an internal problem. Try again; if it persists, check the server log.",
};

/**
 * @param {string} code @param {string} message the server's own detail
 * @returns {string}
 */
export function errorWords(code, message) {
  if (message === NO_PACS_KEY) return message;
  const base = ERROR_WORDS[code] ?? "Something went wrong on the server.";
  return message && message !== base ? `${base} (${message})` : base;
}

/** @type {Record<string, string>} */
export const END_WORDS = {
  eos: "finished (end of text)",
  end_of_turn: "finished",
  max_tokens: "stopped at the token limit",
  cancelled: "stopped",
  error: "failed",
};

/**
 * The "Image reliance" line: the token's share of attention on the image; in a study, on
 * the shown image and on all images together.
 * @param {number} mass @param {{label: string, total: number} | null} [scope]
 */
export function relianceText(mass, scope = null) {
  return scope ? `${pct(mass, 1)} on ${scope.label} · ${pct(scope.total, 1)} on all images` : pct(mass, 1);
}
