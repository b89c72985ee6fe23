// @ts-check
/**
 * The offline player's start: the recording embedded in the page (`medviz html`,
 * server/teaching/offline_player.py) read and played through the controller as a replay, with no server.
 *
 * Owns reading the embedded frames, the page's address options (`#play&speed=8`: play at once at
 * that speed; else the replay waits paused at its start), and what needs a server turned off with
 * the reason (the analysis buttons, new sessions, the recordings library and Compare). Does not own
 * the timing (replay.js) nor what frames do to the page (controller.js).
 */

import { setUnavailable } from "../analyses/analysis.js";
import { openInPage } from "../controller.js";
import { $, showBanner } from "../page.js";
import { decodeAll } from "../wire/msgpack.js";
import { frameFromValue } from "../wire/protocol.js";
import { InPageReplay, MAX_SPEED, MIN_SPEED, recorded } from "./replay.js";

export const EMBEDDED = "medviz-recording";

/** @returns {HTMLElement | null} the element holding the offline player's recording; null on a served page */
export function embeddedRecording() {
  return document.getElementById(EMBEDDED);
}

/**
 * Why an analysis cannot be asked in the offline player, by the kinds that need the model (the page's
 * `data-model-kinds`, written from medviz_core/analyses/kinds.py's registry).
 * @param {string[]} modelKinds @returns {(kind: string) => string}
 */
export function offlineWhy(modelKinds) {
  return (kind) => modelKinds.includes(kind) ? "needs the model: open the recording in medviz serve"
    : "needs the server: open the recording in medviz serve";
}

/**
 * `#play&speed=8` -> play at once at 8x; no `play`: paused at the start. A speed outside 0.25-8 is refused.
 * @param {string} hash @returns {{paused: boolean, speed: number, problem: string}}
 */
export function hashOptions(hash) {
  const q = new URLSearchParams(hash.replace(/^#/, ""));
  const asked = q.get("speed");
  const speed = asked === null ? 1 : Number(asked);
  const fits = Number.isFinite(speed) && speed >= MIN_SPEED && speed <= MAX_SPEED;
  return {
    paused: !q.has("play"), speed: fits ? speed : 1,
    problem: fits ? "" : `The speed in the address must be a number in ${MIN_SPEED}–${MAX_SPEED}; got “${asked}”. Playing at 1×.`,
  };
}

/**
 * Hide what needs a server: new sessions, the library, Compare, the server line.
 * @param {string[]} modelKinds
 */
function serverless(modelKinds) {
  setUnavailable(offlineWhy(modelKinds));
  for (const id of ["tab-library", "tab-compare", "share"]) $(id).hidden = true;
  const card = $("new-h").closest("section");
  if (card) card.hidden = true;
  $("server-info").textContent = "offline player · no server";
  $("placeholder").textContent = "Loading the recording…";
}

/**
 * Play the embedded recording; false (with a banner) when it cannot be read.
 * @param {HTMLElement} element @param {string} hash the page's location.hash
 */
export function bootOffline(element, hash) {
  serverless((element.dataset.modelKinds ?? "").split(",").filter(Boolean));
  let frames;
  try {
    const bytes = Uint8Array.from(atob((element.textContent ?? "").trim()), (c) => c.charCodeAt(0));
    frames = recorded(decodeAll(bytes).values.map(frameFromValue));
  } catch (err) {
    showBanner(`The recording in this file could not be read: ${/** @type {Error} */ (err).message}`);
    return false;
  }
  const options = hashOptions(hash);
  if (options.problem) showBanner(options.problem);
  openInPage((on) => {
    // no server recording behind it: recording "" (nothing to share, download or ask analyses of)
    const replay = new InPageReplay(frames, "", on.frame, options);
    replay.begin();
    return {
      channel: replay, pause: () => replay.pause(), resume: () => replay.resume(),
      seek: (i) => replay.seek(i), speed: (v) => replay.speed(v),
    };
  });
  return true;
}
