// @ts-check
/**
 * The pinned token's context on the page: the words it read marked in the report and in
 * the collapsible prompt view (stronger for what it read more), and links drawn from the
 * token to each of them on one SVG laid over both.
 *
 * Owns the prompt view's words (one chip per image for its image tokens), the `read`
 * marks and the link lines. Which token is pinned, and whether links are on, is the
 * caller's (render.js); resolving positions to words is context.js's.
 */

import { promptPieces } from "./context.js";
import { pct, visibleToken } from "../format.js";
import { IMAGE_COLOURS, imageName } from "../images.js";

/**
 * @typedef {import("./context.js").Target} Target
 * @typedef {{box: HTMLElement, svg: SVGSVGElement, report: HTMLElement, prompt: HTMLElement, summary: HTMLElement}} Parts
 *   box holds the prompt view and the report; svg covers it
 */

const SVG = "http://www.w3.org/2000/svg";
let promptKey = "";
let drawnKey = "";
let focusKey = "";

/**
 * The prompt view's words for a session (built once per session).
 * @param {Parts} parts @param {import("../wire/protocol.js").StartFrame | null} start
 */
export function renderPrompt(parts, start) {
  const key = start ? `${start.session}|${start.prompt.tokens.length}` : "";
  if (key === promptKey) return;
  promptKey = key;
  const pieces = start ? promptPieces(start) : [];
  const text = pieces.filter((p) => p.kind === "text").length;
  parts.summary.textContent = !start ? "Prompt" : pieces.length
    ? `Prompt · ${text} text tokens and ${start.images.length} image${start.images.length === 1 ? "" : "s"} · ${start.prompt.preset}`
    : `Prompt · ${start.prompt.preset} · its words are not in this recording`;
  parts.prompt.replaceChildren(...pieces.map((p) => {
    const span = document.createElement("span");
    if (p.kind === "image") {
      span.className = "ptok chip";
      span.dataset.image = String(p.image);
      span.textContent = "[image]";
      span.style.borderColor = IMAGE_COLOURS[p.image];
      span.title = `${imageName(start, p.image)}: positions ${p.from}–${p.to}`;
    } else {
      span.className = /^<[^<>]+>$/.test(p.text) ? "ptok special" : "ptok";
      span.dataset.pos = String(p.position);
      span.textContent = p.text;
      span.title = `position ${p.position} “${visibleToken(p.text)}”`;
    }
    return span;
  }));
}

/**
 * The span of a target: a report token by index, a prompt word by position.
 * @param {Parts} parts @param {Target} t @returns {HTMLElement | null}
 */
function spanOf(parts, t) {
  const el = t.place === "report" ? parts.report.children[t.index] : parts.prompt.querySelector(`[data-pos="${t.position}"]`);
  return el instanceof HTMLElement ? el : null;
}

/**
 * Mark what the token read and draw the links; no targets (links off, nothing pinned, a
 * recording without context) clears both.
 * @param {Parts} parts @param {HTMLElement | null} from the pinned token's span @param {Target[]} targets
 * @param {boolean} promptOpen whether the prompt view shows its words
 */
export function showContext(parts, from, targets, promptOpen) {
  const spans = targets.map((t) => spanOf(parts, t));
  const key = [from?.dataset.i, promptOpen, parts.report.scrollTop, parts.prompt.scrollTop, parts.box.clientWidth,
    parts.box.clientHeight, parts.report.childElementCount, ...targets.map((t, k) => `${t.position}:${t.value}:${spans[k] ? 1 : 0}`)].join("|");
  if (key === drawnKey) return;
  drawnKey = key;
  for (const old of parts.box.querySelectorAll(".read")) {
    old.classList.remove("read");
    /** @type {HTMLElement} */ (old).style.removeProperty("--read");
    delete (/** @type {HTMLElement} */ (old).dataset.read);
    /** @type {HTMLElement} */ (old).title = /** @type {HTMLElement} */ (old).title.split(" · read ")[0];
  }
  targets.forEach((t, k) => {
    const span = spans[k];
    if (!span) return;
    span.classList.add("read");
    span.style.setProperty("--read", t.weight.toFixed(3));
    span.dataset.read = String(t.value);
    span.title = `${span.title.split(" · read ")[0]} · read ${pct(t.value, 1)}`;
  });
  const focus = `${from?.dataset.i}|${promptOpen}`;
  if (focus !== focusKey) {
    focusKey = focus;
    const first = targets.findIndex((t, k) => t.place === "prompt" && spans[k]);
    if (promptOpen && first >= 0) centreIn(/** @type {HTMLElement} */ (spans[first]), parts.prompt);
  }
  drawLinks(parts, from, targets, spans, promptOpen);
}

/** Forget what was drawn (the layout moved): the next showContext draws again. */
export function invalidateContext() {
  drawnKey = "";
}

/**
 * One arc from the token to each word it read that is in view, width and opacity by weight.
 * @param {Parts} parts @param {HTMLElement | null} from @param {Target[]} targets
 * @param {(HTMLElement | null)[]} spans @param {boolean} promptOpen
 */
function drawLinks(parts, from, targets, spans, promptOpen) {
  const box = parts.box.getBoundingClientRect();
  parts.svg.setAttribute("viewBox", `0 0 ${Math.max(1, box.width)} ${Math.max(1, box.height)}`);
  const source = from && inView(from, parts.report) ? centre(from, box) : null;
  const lines = [];
  for (const [k, t] of targets.entries()) {
    const span = spans[k];
    const scroller = t.place === "report" ? parts.report : parts.prompt;
    if (!source || !span || span === from || (t.place === "prompt" && !promptOpen) || !inView(span, scroller)) continue;
    const [x2, y2] = centre(span, box);
    const [x1, y1] = source;
    const lift = Math.max(18, Math.abs(x2 - x1) * 0.25);
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", `M ${x1.toFixed(1)} ${y1.toFixed(1)} Q ${((x1 + x2) / 2).toFixed(1)} ${(Math.min(y1, y2) - lift).toFixed(1)} ${x2.toFixed(1)} ${y2.toFixed(1)}`);
    path.setAttribute("class", "link");
    path.setAttribute("stroke-width", (1 + 3 * t.weight).toFixed(2));
    path.setAttribute("stroke-opacity", (0.25 + 0.7 * t.weight).toFixed(2));
    path.dataset.position = String(t.position);
    lines.push(path);
  }
  parts.svg.replaceChildren(...lines);
}

/** Scroll a word the token read to the middle of the prompt view (a new token pinned). @param {HTMLElement} el @param {HTMLElement} scroller */
function centreIn(el, scroller) {
  const r = el.getBoundingClientRect();
  const s = scroller.getBoundingClientRect();
  scroller.scrollTop += r.top + r.height / 2 - (s.top + s.height / 2);
}

/** @param {HTMLElement} el @param {DOMRect} box @returns {[number, number]} */
function centre(el, box) {
  const r = el.getBoundingClientRect();
  return [r.left + r.width / 2 - box.left, r.top + r.height / 2 - box.top];
}

/** Whether an element's middle shows inside its scrolling container. @param {HTMLElement} el @param {HTMLElement} scroller */
function inView(el, scroller) {
  const r = el.getBoundingClientRect();
  const s = scroller.getBoundingClientRect();
  const y = r.top + r.height / 2;
  return r.width + r.height > 0 && y >= s.top && y <= s.bottom;
}
