// @ts-check
/**
 * How a token's attention splits across the images of a study: the shares bar under the
 * X-rays, and the image selector that picks which image the panels show.
 *
 * Owns these two small DOM pieces. The shares come from the step frame (`shares`); the
 * colours from images.js. A one-image session hides both.
 */

import { pct } from "../format.js";
import { IMAGE_COLOURS, TEXT_COLOUR, imageName, imagesOf, sharesOf } from "../images.js";

/**
 * One segment per image (width = its share of the token's attention), then the rest (text).
 * @param {HTMLElement} el @param {import("../wire/protocol.js").StartFrame | null} start
 * @param {import("../wire/protocol.js").StepFrame | null} step
 */
export function renderShares(el, start, step) {
  const n = imagesOf(start).length;
  el.hidden = n < 2;
  if (n < 2) return;
  const shares = step ? sharesOf(step) : [];
  const key = `${step?.i}|${shares.join(",")}`;
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  const total = shares.reduce((a, b) => a + b, 0);
  const parts = shares.map((v, k) => {
    const span = document.createElement("span");
    span.className = "share";
    span.dataset.image = String(k);
    span.style.width = `${Math.max(0, v) * 100}%`;
    span.style.background = IMAGE_COLOURS[k];
    span.textContent = v > 0.08 ? `${imageName(start, k)} ${pct(v)}` : "";
    span.title = `${imageName(start, k)}: ${pct(v, 1)} of this token's attention`;
    return span;
  });
  const rest = document.createElement("span");
  rest.className = "text";
  rest.style.flex = "1";
  rest.style.background = TEXT_COLOUR;
  rest.textContent = step ? `text ${pct(Math.max(0, 1 - total))}` : "no token yet";
  rest.title = "Attention on the prompt's text and the tokens written so far";
  el.replaceChildren(...parts, rest);
}

/**
 * Buttons naming each image; the chosen one drives the method grid, detail panel and analyses.
 * @param {HTMLElement} el @param {import("../wire/protocol.js").StartFrame | null} start @param {number} chosen
 */
export function renderImageSelect(el, start, chosen) {
  const n = imagesOf(start).length;
  el.hidden = n < 2;
  const key = `${start?.session}|${n}|${chosen}`;
  if (n < 2 || el.dataset.key === key) return;
  el.dataset.key = key;
  el.replaceChildren(...imagesOf(start).map((_, k) => {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "radio");
    b.setAttribute("aria-checked", String(k === chosen));
    b.dataset.image = String(k);
    b.style.borderLeft = `4px solid ${IMAGE_COLOURS[k]}`;
    b.textContent = imageName(start, k);
    return b;
  }));
}
