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

/** @param {number} v a raw map value */
export function sci(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 0.01 && a < 1000 ? v.toPrecision(3) : v.toExponential(2);
}

/**
 * A token's text made visible: spaces and newlines shown, empty pieces marked.
 * @param {string} text
 */
export function visibleToken(text) {
  if (text === "") return "∅";
  return text.replace(/\n/g, "⏎").replace(/ /g, "·");
}

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
