// @ts-check
/**
 * What the page's modules share: the store, the decoded X-rays of the session's images,
 * the open connection, and the message banner.
 *
 * Owns these few mutable references so that app.js (wiring), controller.js (sessions)
 * and render.js (drawing) can be separate files without passing everything around.
 */

import { Store } from "./state.js";

/** @param {string} id */
export const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

export const store = new Store();

/**
 * @typedef {{channel: {close: () => void}, cancel?: () => void, pause?: () => void,
 *   resume?: () => void, seek?: (i: number) => void, speed?: (v: number) => void}} Link
 * @typedef {"token" | "overview" | "heads" | "faith" | "agree" | "volume"} DetailTab
 */

export const page = {
  /** @type {(import("./draw/xray.js").XRay | null)[]} one per image, in prompt order */ xrays: [],
  /** @type {Link | null} the socket of the current session, watch or replay (offline: the in-page replay) */ link: null,
  /** @type {import("./session.js").Channel | null} a socket opened only to ask for analyses */ side: null,
  /** @type {DetailTab} */ detailTab: "token",
  /** whether the detail drawer is open (render.js shows it in the frame that fills it) */ detailOpen: false,
  /** whether the chosen files were already sent (a new pick then starts a new study) */ filesUsed: false,
  /** @type {{session: string, key: string, fromPacs?: boolean} | null} the owner key of this tab's live session (its
   * `owner` frame); fromPacs: this tab started it on a study of the PACS (unknown after a reload) */ owned: null,
  /** whether this tab's last start was on a study of the PACS (not on files) */ startedFromPacs: false,
  /** whether the server has a PACS (GET /api/pacs): the PACS source and Send to PACS are shown */ pacs: false,
  rejoins: 0,
  /** whether the current link is a rejoin as owner not yet answered by the session's frames */ rejoining: false,
};

/** @param {string} text */
export function showBanner(text) {
  $("banner-text").textContent = text;
  $("banner").hidden = false;
}

export function hideBanner() {
  $("banner").hidden = true;
}

/**
 * An /api URL carrying the page's token.
 * @param {string} path @param {string | null} token
 */
export function apiUrl(path, token) {
  const url = new URL(path, location.origin);
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

/** @param {Record<string, string>} extra @returns {string} this page's URL with the token kept */
export function pageUrl(extra) {
  const url = new URL(location.pathname, location.origin);
  if (store.state.token) url.searchParams.set("token", store.state.token);
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
  return url.toString();
}

/**
 * The link the Share button copies: a running session's watch link; a replay's, or a finished
 * session's that was recorded, the link to its replay; null when there is nothing to share.
 * @param {import("./state.js").State} s
 * @returns {{url: string, live: boolean} | null}
 */
export function shareLink(s) {
  if (!s.start) return null;
  const recording = s.mode === "replay" ? s.replay?.recording : s.start.recording;
  if (s.mode !== "replay" && ["connecting", "queued", "running"].includes(s.phase)) return { url: pageUrl({ watch: s.start.session }), live: true };
  if (recording && (s.mode === "replay" || s.phase === "ended")) return { url: pageUrl({ replay: recording }), live: false };
  return null;
}

/** @returns {[number, number]} the session's map grid [gh, gw] */
export function gridOf() {
  return store.state.start?.model.grid ?? [16, 16];
}
