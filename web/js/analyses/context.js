// @ts-check
/**
 * What a token read: its `context` links (the text positions it attended to most, mean
 * over layers and heads, docs/methods.md) resolved to the words they point at, and the
 * prompt as the words a link can reach.
 *
 * Owns the mapping from sequence positions to words: a position before the prompt's end is
 * that prompt token (image tokens are never linked; they are collapsed into one chip per
 * image), a later one is the generated token at `position - prompt length` (the token at
 * position q was fed at q and step q - prompt length + 1 read it). Pure: no DOM, no state.
 */

import { pct, visibleToken } from "../format.js";

/**
 * @typedef {import("../wire/protocol.js").StartFrame} StartFrame
 * @typedef {import("../wire/protocol.js").StepFrame} StepFrame
 * @typedef {{position: number, value: number, weight: number, place: "prompt" | "report", index: number,
 *   text: string}} Target  weight: value / the largest value (1 for the word read most);
 *   index: the prompt position, or the generated token's index
 * @typedef {{kind: "text", position: number, text: string} | {kind: "image", image: number, from: number,
 *   to: number}} PromptPiece  one prompt token, or one image's block of tokens (positions from..to)
 */

/** @param {StartFrame} start */
export const promptLength = (start) => start.prompt.tokenIds.length;

/**
 * The words `step` read, largest first, each with its weight against the largest.
 * @param {StartFrame} start @param {(StepFrame | undefined)[]} steps @param {StepFrame} step
 * @returns {Target[]}
 */
export function contextTargets(start, steps, step) {
  const n = promptLength(start);
  const top = Math.max(0, ...step.context.map((c) => c.value));
  return step.context.map(({ position, value }) => {
    const weight = top > 0 ? value / top : 0;
    if (position < n) {
      return { position, value, weight, place: /** @type {const} */ ("prompt"), index: position, text: start.prompt.tokens[position] ?? `#${position}` };
    }
    const index = position - n;
    return { position, value, weight, place: /** @type {const} */ ("report"), index, text: steps[index]?.text ?? `#${position}` };
  });
}

/**
 * The prompt as pieces to show: each text token, and one piece per image for its tokens.
 * Empty when the start frame holds no token texts (recordings made before protocol v2).
 * @param {StartFrame} start @returns {PromptPiece[]}
 */
export function promptPieces(start) {
  const { tokens } = start.prompt;
  /** @type {Map<number, number>} */
  const imageAt = new Map();
  start.images.forEach((im, k) => { for (const p of im.positions) imageAt.set(p, k); });
  /** @type {PromptPiece[]} */
  const pieces = [];
  for (let p = 0; p < tokens.length; p++) {
    const image = imageAt.get(p);
    const last = pieces[pieces.length - 1];
    if (image === undefined) pieces.push({ kind: "text", position: p, text: tokens[p] });
    else if (last?.kind === "image" && last.image === image && last.to === p - 1) last.to = p;
    else pieces.push({ kind: "image", image, from: p, to: p });
  }
  return pieces;
}

/**
 * Statistics rows about what the token read: the words it read most and the sink; none
 * for a step without context (a recording made before protocol v2).
 * @param {Target[]} targets @param {StepFrame} step @param {number} [shown] how many words
 * @returns {[string, string][]}
 */
export function contextRows(targets, step, shown = 3) {
  if (targets.length === 0) return [];
  const words = targets.slice(0, shown).map((t) => `“${visibleToken(t.text)}” ${pct(t.value, 1)}`).join(" · ");
  return [["Read most", words], ["Attention sink", `${pct(step.sink, 1)} on <bos>`]];
}
