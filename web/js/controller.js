// @ts-check
/**
 * Sessions and what their frames do to the page: start, stop, watch, replay, pinning a
 * token and moving through tokens, and the socket analyses are asked on.
 *
 * Owns the session lifecycle and turning frames into state (and X-rays into canvases).
 * Rendering is render.js's; the DOM wiring is app.js's.
 */

import { failRequest, onAnalysisFrame, resetJobs, setSender } from "./analyses/analysis.js";
import { errorWords } from "./format.js";
import { imagesOf } from "./images.js";
import { $, hideBanner, page, pageUrl, showBanner, store } from "./page.js";
import { invalidate, requestRender } from "./render.js";
import { Channel, forgetOwner, keepOwner, keptOwner, rejoinSession, replayRecording, startSession, watchSession } from "./session.js";
import { shownIndex } from "./state.js";
import { applyWindow, loadXRay } from "./draw/xray.js";

/** @param {import("./wire/protocol.js").Frame} f */
function onFrame(f) {
  const s = store.state;
  if (f.type === "start") {
    const again = s.start?.session === f.session;
    store.set({ start: f, phase: "running", queuePosition: null, error: null, ...(again ? {} : { steps: [], end: null, cursor: -1, pinned: null }) });
    if (!again) void showImages(imagesOf(f).map((im) => new Blob([/** @type {BlobPart} */ (im.png)], { type: "image/png" })));
  } else if (f.type === "step") {
    s.steps[f.i] = f;
    store.set({ steps: s.steps, cursor: f.i, phase: "running" });
  } else if (f.type === "owner") {
    keepOwner(f);  // this tab's key to take the session back after a reload
    // kept after the end too: Send to PACS proves the owner with it (and only a study opened from the PACS goes back)
    page.owned = { session: f.session, key: f.key, fromPacs: page.startedFromPacs };
    page.rejoining = false;
  } else if (f.type === "end") {
    if (s.mode === "live") forgetOwner();
    store.set({ end: f, phase: "ended" });
    if (f.reason === "error") showBanner(`The generation failed: ${f.message || "no detail given"}.`);
  } else if (f.type === "error") {
    // a refused analysis shows on the job of the request it answers, without a banner
    if (f.id !== null && failRequest(f.id, f.code, f.message)) return;
    if (s.phase === "running" || s.phase === "ended") showBanner(errorWords(f.code, f.message));
    else if (page.rejoining) {  // the session could not be taken back: a fresh page to start a new one
      forgetOwner();
      page.rejoining = false;
      page.link?.channel.close();
      page.link = null;
      store.set({ mode: "idle", phase: "idle" });
      showBanner(errorWords(f.code, f.message));
    } else {
      if (s.mode === "live") forgetOwner();
      store.set({ error: { code: f.code, message: f.message }, phase: "closed" });
      showBanner(errorWords(f.code, f.message));
    }
  } else if (f.type === "queued") {
    store.set({ queuePosition: f.position, phase: "queued" });
  } else if (f.type === "replay") {
    store.set({ replay: { recording: f.recording, steps: f.steps, speed: f.speed, paused: f.paused, at: f.at } });
  } else if (f.type === "analysis") {
    onAnalysisFrame(f);
  }
}

/** @type {import("./session.js").Handlers} */
const handlers = {
  frame: onFrame,
  problem: (message) => showBanner(message),
  closed: (why, clean, code) => {
    const s = store.state;
    if (s.phase === "ended" || s.error) return;
    // a watcher rejoins on any close; a live page too when it fell behind (4008) or lost the link (1006):
    // the session runs on, and the server sends its log from the start: to the owner's key as its owner
    // (Stop still works), else through /ws/watch
    const lost = code === 4008 || code === 1006;
    const owned = s.mode === "live" && lost ? keptOwner() : null;
    if ((s.start || owned) && page.rejoins < 3 && (s.mode === "watch" || (s.mode === "live" && lost))) {
      page.rejoins += 1;
      const again = owned ? () => openRejoin(owned) : () => openWatch(/** @type {string} */ (s.start?.session));
      setTimeout(again, code === 4008 ? 0 : 600);
      return;
    }
    if (page.rejoining) forgetOwner();
    store.set({ phase: "closed" });
    if (!clean || s.phase !== "idle") showBanner(why);
  },
};

/** @param {Blob[]} blobs one per image */
export async function showImages(blobs) {
  const view = store.state.view;
  page.xrays = await Promise.all(blobs.map(async (blob) => {
    try {
      const xray = await loadXRay(blob);
      applyWindow(xray, view.window, view.level, view.invert);
      return xray;
    } catch {
      return null;
    }
  }));
  const shown = page.xrays.some(Boolean);
  $("placeholder").hidden = shown;
  if (!shown) $("placeholder").textContent = "No browser preview for this file (DICOM?). The image appears when the session starts.";
  invalidate();
}

/** @param {"live" | "watch" | "replay"} mode @param {boolean} [owned] the owner key stays (a rejoin) */
function fresh(mode, owned = false) {
  if (!owned && page.link && store.state.mode === "live") forgetOwner();  // left on purpose: the server stops it
  page.rejoining = false;
  if (!owned) page.owned = null;
  page.link?.channel.close();
  page.side?.close();
  page.link = null;
  page.side = null;
  resetJobs();
  store.resetSession();
  store.set({ mode, phase: "connecting" });
  hideBanner();
  page.detailOpen = false;
}

export function start() {
  const s = store.state;
  const form = readForm();
  if (typeof form === "string") return showBanner(form);
  if (s.files.length === 0) return showBanner("Choose a chest X-ray first (PNG, JPEG or DICOM).");
  fresh("live");
  page.filesUsed = true;
  history.replaceState(null, "", pageUrl({}));
  page.startedFromPacs = false;
  page.link = startSession({ images: s.files.map((f) => f.bytes), labels: s.files.map((f) => f.label), ...form }, s.token, handlers);
}

/**
 * Start a session on a study of the server's PACS: the server retrieves the chosen instances (no files travel).
 * @param {import("./wire/protocol.js").PacsPick} pick
 */
export function startFromPacs(pick) {
  const form = readForm();
  if (typeof form === "string") return showBanner(form);
  fresh("live");
  history.replaceState(null, "", pageUrl({}));
  page.startedFromPacs = true;
  page.link = startSession({ images: [], labels: [], pacs: pick, ...form }, store.state.token, handlers);
}

/** @type {() => ReturnType<typeof import("./views/controls.js").readRequest>} */
let readForm = () => "The form is not ready.";
/** @param {typeof readForm} fn */
export function setFormReader(fn) {
  readForm = fn;
}

export function stop() {
  const s = store.state;
  if (s.mode === "live" && page.link?.cancel && s.phase !== "connecting") page.link.cancel();
  else {
    page.link?.channel.close();
    store.set({ phase: "closed" });
  }
}

/**
 * Take this tab's live session back as its owner (after a reload or a lost link): its log from the
 * start, then live frames; a refusal (a wrong or expired key) leaves a fresh page.
 * @param {{session: string, key: string}} owned
 */
export function openRejoin(owned) {
  fresh("live", true);
  page.rejoining = true;
  history.replaceState(null, "", pageUrl({}));
  page.link = rejoinSession(owned, store.state.token, handlers);
}

/** At page load: rejoin the live session this tab owned before a reload, if it kept one. @returns {boolean} */
export function resumeOwned() {
  const owned = keptOwner();
  if (owned) openRejoin(owned);
  return owned !== null;
}

/** @param {string} id */
export function openWatch(id) {
  fresh("watch");
  history.replaceState(null, "", pageUrl({ watch: id }));
  page.link = watchSession(id, store.state.token, handlers);
}

/** @param {string} id */
export function openReplay(id) {
  fresh("replay");
  history.replaceState(null, "", pageUrl({ replay: id }));
  page.link = replayRecording(id, store.state.token, handlers);
}

/**
 * Replay frames the page holds (the offline player's, offline/boot.js) through the same handlers as a socket's.
 * @param {(on: import("./session.js").Handlers) => import("./page.js").Link} open
 */
export function openInPage(open) {
  fresh("replay");
  page.link = open(handlers);
}

/** @returns {boolean} whether a replay took the key */
export function playPause() {
  const r = store.state.replay;
  const link = page.link;
  if (!r || !link) return false;
  if (store.state.phase === "ended") {
    link.seek?.(0);
    link.resume?.();
  } else if (r.paused) link.resume?.();
  else link.pause?.();
  return true;
}

/** @param {number} i */
export function seekTo(i) {
  const s = store.state;
  // after the end, scrubbing inspects tokens: stay paused where the user let go
  const ended = s.phase === "ended";
  if (ended && s.replay && !s.replay.paused) page.link?.pause?.();
  page.link?.seek?.(i);
  store.set({ pinned: null, ...(s.steps[i] ? { cursor: i } : {}), ...(ended ? { phase: "running" } : {}) });
}

/** @param {number | null} i @param {boolean} [open] */
export function pin(i, open = true) {
  const s = store.state;
  if (i === null) {
    page.detailOpen = false;
    store.set({ pinned: null });
    return;
  }
  const last = s.steps.length - 1;
  if (last < 0) return;
  store.set({ pinned: Math.max(0, Math.min(last, i)) });
  if (open) openDetail(page.detailTab === "overview" ? "token" : page.detailTab);
}

/** @param {number} delta */
export function move(delta) {
  const s = store.state;
  let i = shownIndex(s) + delta;
  while (i >= 0 && i < s.steps.length && !s.steps[i]) i += delta;
  if (i >= 0 && i < s.steps.length) pin(i, page.detailOpen);
}

const DETAIL_TABS = ["token", "overview", "heads", "faith", "agree", "volume"];

/** @param {import("./page.js").DetailTab} tab */
export function openDetail(tab) {
  page.detailTab = tab;
  page.detailOpen = true;
  for (const t of DETAIL_TABS) $(`detail-tab-${t}`).setAttribute("aria-selected", String(t === tab));
  invalidate();
}

/**
 * Send an analysis request on the session's socket, or on a side socket opened for it
 * (the recording's replay, else the session's watch route) when that one has closed.
 * @param {Uint8Array} bytes
 */
function sendAnalysis(bytes) {
  const link = page.link?.channel;
  const open = link instanceof Channel && link.ws.readyState === WebSocket.OPEN ? link : page.side;
  if (open && open.ws.readyState <= WebSocket.OPEN) {
    if (open.ws.readyState === WebSocket.OPEN) open.send(bytes);
    else open.ws.addEventListener("open", () => open.send(bytes), { once: true });
    return true;
  }
  const s = store.state;
  const recording = s.replay?.recording ?? s.start?.recording ?? null;
  const path = recording ? `/ws/replay/${encodeURIComponent(recording)}?speed=8` : s.start ? `/ws/watch/${encodeURIComponent(s.start.session)}?stay=1` : null;
  if (!path) return false;
  const side = new Channel(path, s.token, {
    frame: (f) => {
      if (f.type === "analysis") onAnalysisFrame(f);
      else if (f.type === "error" && (f.id === null || !failRequest(f.id, f.code, f.message))) {
        showBanner(errorWords(f.code, f.message));
      }
    },
    problem: (m) => showBanner(m),
    closed: () => { if (page.side === side) page.side = null; },
  });
  page.side = side;
  side.ws.addEventListener("open", () => side.send(bytes), { once: true });
  return true;
}

setSender(sendAnalysis);
export { requestRender };
