// @ts-check
/**
 * The analysis tabs of the detail drawer (layers × heads, faithfulness, agreement, 3D) for
 * the pinned token and the chosen image.
 *
 * Owns choosing and refreshing the view; each view's drawing is its own module, the job
 * bar they share is job-bar.js.
 */

import { renderAgreement } from "./agree-view.js";
import { renderFaithfulness } from "./faith-view.js";
import { renderHeads } from "./heads-view.js";
import { $, gridOf, page } from "../page.js";
import { palette } from "../draw/palette.js";
import { renderVolumePanel } from "./volume-panel.js";

/**
 * @typedef {{s: import("../state.js").State, step: import("../wire/protocol.js").StepFrame,
 *   block: import("../wire/protocol.js").ImageMaps, image: number, xray: HTMLCanvasElement, grid: [number, number],
 *   table: Uint8ClampedArray}} ViewCtx  block: the token on the chosen image
 */

/**
 * @param {"heads" | "faith" | "agree" | "volume"} tab @param {import("../state.js").State} s
 * @param {import("../wire/protocol.js").StepFrame} step the pinned token
 * @param {import("../wire/protocol.js").ImageMaps} block the token on the chosen image
 * @param {number} image
 */
export function renderAnalysisTab(tab, s, step, block, image) {
  const xray = page.xrays[image]?.canvas;
  if (!xray) return;
  /** @type {ViewCtx} */
  const c = { s, step, block, image, xray, grid: gridOf(), table: palette(s.view.palette).table };
  if (tab === "heads") renderHeads($("heads"), c);
  else if (tab === "faith") renderFaithfulness($("faith"), c);
  else if (tab === "agree") renderAgreement($("agree"), c);
  else renderVolumePanel($("volume"), c);
}
