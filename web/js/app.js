// @ts-check
/**
 * Wiring: the page's controls and keys bound to the controller, the top tabs, the
 * recordings library, the server's health line, and the first render.
 *
 * Sessions and frames are controller.js's; what is drawn is render.js's; every drawing
 * and decoding detail lives in the module that owns it.
 */

import { analyze, cancelJob, gradientMaps } from "./analyses/analysis.js";
import { bindCompare, showCompare } from "./views/compare.js";
import { invalidateContext } from "./analyses/context-view.js";
import { bindDisplay, bindFileInput, bindPromptMode, readRequest, showDisplay, showSuggested } from "./views/controls.js";
import { move, openDetail, openReplay, openWatch, pin, playPause, resumeOwned, seekTo, setFormReader, showImages, start, startFromPacs, stop } from "./controller.js";
import { exportDetail } from "./analyses/detail.js";
import { exportDicom } from "./analyses/dicom-export.js";
import { sendToPacs } from "./analyses/pacs-send.js";
import { PacsBrowser, pacsInfo } from "./views/pacs.js";
import { captioned, downloadPng } from "./export.js";
import { errorWords, methodLabel, modelNote, visibleToken } from "./format.js";
import { blockOf, imageName, imagesOf } from "./images.js";
import { bindKeys } from "./keys.js";
import { deleteRecording, listRecordings, renderLibrary } from "./views/library.js";
import { METHODS_ORDER } from "./methods.js";
import { $, apiUrl, hideBanner, page, showBanner, store } from "./page.js";
import { stripIndexAt } from "./views/panels.js";
import { Player } from "./views/player.js";
import { detailContext, invalidate, panes, requestRender, shownBlock } from "./render.js";
import { bootOffline, embeddedRecording } from "./offline/boot.js";
import { renderOfflineButton } from "./views/offline-button.js";
import { shownIndex, shownStep } from "./state.js";
import { addFiles, dropText, renderFiles } from "./views/study.js";
import { volumeMethod } from "./analyses/volume-panel.js";
import { applyWindow } from "./draw/xray.js";

const query = new URLSearchParams(location.search);
store.state.token = query.get("token");
// The operator's link (?pacs_key=) never reaches this page: the server answers it with a 303 to the same address
// without the key and keeps the key in a cookie of its own (guard/security.py), so no address or history entry holds it.
export const ALL_METHODS = [...METHODS_ORDER, "gradient"];

const player = new Player($("player"), {
  playPause: () => void playPause(),
  speed: (v) => page.link?.speed?.(v),
  seek: (i) => seekTo(i),
});

/** @param {"viewer" | "library" | "compare"} tab */
function showTab(tab) {
  for (const t of ["viewer", "library", "compare"]) {
    $(t).hidden = t !== tab;
    $(`tab-${t}`).setAttribute("aria-selected", String(t === tab));
  }
  if (tab === "library") void refreshLibrary();
  if (tab === "compare") void showCompare(store.state.token);
}

async function refreshLibrary() {
  const token = store.state.token;
  try {
    const list = await listRecordings(token);
    renderLibrary($("library-list"), list, token, {
      play: (id) => {
        showTab("viewer");
        openReplay(id);
      },
      remove: (id) => {
        if (!confirm(`Delete recording ${id}? This cannot be undone.`)) return;
        deleteRecording(id, token).then(refreshLibrary, (err) => showBanner(`Could not delete: ${err.message}`));
      },
    });
  } catch (err) {
    showBanner(`The recordings could not be listed: ${/** @type {Error} */ (err).message}`);
  }
}

/** The PACS source beside the file drop, when the server has a PACS (views/pacs.js). */
async function loadPacs() {
  const info = await pacsInfo(store.state.token).catch(() => null);
  if (!info) return;
  page.pacs = true;
  new PacsBrowser({ token: () => store.state.token, start: startFromPacs }).bind(info.host);
  requestRender();
}

async function loadHealth() {
  try {
    const res = await fetch(apiUrl("/api/health", store.state.token));
    if (res.status === 401 || res.status === 403) {
      showBanner(errorWords("unauthorized", ""));
      return;
    }
    const h = await res.json();
    store.set({ health: h });
    showSuggested(h.params);
    $("server-info").textContent = [h.model, h.device].filter(Boolean).join(" · ") || "server ready";
  } catch {
    $("server-info").textContent = "server unreachable";
  }
}

function showFiles() {
  const files = store.state.files;
  renderFiles($("files"), files, {
    label: (k, label) => setFiles(files.map((f, j) => (j === k ? { ...f, label } : f))),
    remove: (k) => setFiles(files.filter((_, j) => j !== k)),
    up: (k) => setFiles(files.map((f, j) => (j === k - 1 ? files[k] : j === k ? files[k - 1] : f))),
  });
  $("drop-text").innerHTML = dropText(files);
}

/** @param {import("./state.js").ChosenFile[]} files */
function setFiles(files) {
  store.set({ files });
  showFiles();
  if (store.state.mode === "idle" || store.state.phase !== "running") void showImages(files.map((f) => new Blob([/** @type {BlobPart} */ (f.bytes)])));
}

/**
 * The sidebar follows the session on screen: a replay's, a watched one's, or a live one taken back
 * after a reload show their own images and labels (from the start frame); a live page keeps the
 * files it sent. A new pick then starts a new study.
 * @param {import("./wire/protocol.js").StartFrame} start
 */
function showSessionFiles(start) {
  const s = store.state;
  if (s.mode === "live" && s.files.length > 0) return;
  const files = imagesOf(start).map((im, k) => ({ name: `${imageName(start, k)} (recorded)`, bytes: im.png, label: im.label }));
  page.filesUsed = true;
  store.set({ files });
  showFiles();
}

function bindStudy() {
  bindFileInput(async (picked) => {
    const current = page.filesUsed ? [] : store.state.files;
    page.filesUsed = false;
    const { files, dropped } = await addFiles(current, picked);
    if (dropped > 0) showBanner(`A study takes at most 4 images; ${dropped} file${dropped > 1 ? "s were" : " was"} left out.`);
    setFiles(files);
  });
  setFormReader(readRequest);
}

function bind() {
  store.subscribe((s, changed) => {
    if (changed.has("view.window") || changed.has("view.level") || changed.has("view.invert")) {
      for (const x of page.xrays) if (x) applyWindow(x, s.view.window, s.view.level, s.view.invert);
      invalidate();
    }
    if ([...changed].some((k) => k.startsWith("view."))) showDisplay(s.view);
    requestRender();
  });
  bindDisplay(store, ALL_METHODS);
  bindPromptMode();
  bindStudy();
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("banner-close").addEventListener("click", hideBanner);
  for (const t of /** @type {const} */ (["viewer", "library", "compare"])) $(`tab-${t}`).addEventListener("click", () => showTab(t));
  $("refresh-library").addEventListener("click", () => void refreshLibrary());
  $("share").addEventListener("click", () => {
    const url = $("share").dataset.url ?? "";
    const what = url.includes("replay=") ? "Replay link" : "Watch link";
    navigator.clipboard?.writeText(url).then(() => showBanner(`${what} copied: ${url}`), () => showBanner(`Share this ${what.toLowerCase()}: ${url}`));
  });
  $("report").addEventListener("click", (ev) => {
    const tok = /** @type {HTMLElement} */ (ev.target).closest(".tok");
    if (tok instanceof HTMLElement) pin(Number(tok.dataset.i));
  });
  $("strip").addEventListener("click", (ev) => pin(stripIndexAt(/** @type {HTMLCanvasElement} */ ($("strip")), ev.clientX, store.state.steps.length)));
  $("methods-grid").addEventListener("click", (ev) => {
    const tile = /** @type {HTMLElement} */ (ev.target).closest(".method-tile");
    if (tile instanceof HTMLElement && tile.dataset.method) store.set({ view: { method: tile.dataset.method } });
  });
  /** @param {Event} ev */
  const pickImage = (ev) => {
    const el = /** @type {HTMLElement} */ (ev.target).closest("[data-image]");
    if (el instanceof HTMLElement && imagesOf(store.state.start).length > 1) store.set({ view: { image: Number(el.dataset.image) } });
  };
  $("image-select").addEventListener("click", pickImage);
  $("panes").addEventListener("click", pickImage);
  $("overview").addEventListener("click", (ev) => {
    const thumb = /** @type {HTMLElement} */ (ev.target).closest(".thumb");
    if (thumb instanceof HTMLElement) {
      pin(Number(thumb.dataset.i), false);
      openDetail("token");
    }
  });
  $("open-overview").addEventListener("click", () => openDetail("overview"));
  for (const t of /** @type {const} */ (["token", "overview", "heads", "faith", "agree", "volume"])) $(`detail-tab-${t}`).addEventListener("click", () => openDetail(t));
  $("close-detail").addEventListener("click", () => pin(null));
  $("prev-token").addEventListener("click", () => move(-1));
  $("next-token").addEventListener("click", () => move(1));
  $("export-view").addEventListener("click", exportView);
  $("export-detail").addEventListener("click", exportPanel);
  $("send-pacs").addEventListener("click", () => {
    const s = store.state;
    const i = s.pinned ?? shownIndex(s);
    const owned = page.owned;
    const from = s.mode === "replay" && s.replay?.recording ? { recording: s.replay.recording }
      : owned && owned.session === s.start?.session ? owned : null;
    if (!s.start || i < 0 || !from) return showBanner("Only the live session's owner, or a replay of its recording, can send it to the PACS.");
    void sendToPacs(from, s.start.session, i, volumeMethod(s), s.token, requestRender);
  });
  $("export-dicom").addEventListener("click", () => {
    const s = store.state;
    const i = s.pinned ?? shownIndex(s);
    if (!s.start || i < 0 || !exportDicom(s.start.session, i, volumeMethod(s))) showBanner("No connection can carry the request: open the session's recording to export it.");
    requestRender();
  });
  // the context links follow the words they join when either list scrolls or the prompt opens
  const relink = () => { invalidateContext(); requestRender(); };
  for (const id of ["report", "prompt-text"]) $(id).addEventListener("scroll", relink, { passive: true });
  $("prompt-view").addEventListener("toggle", relink);
  window.addEventListener("resize", relink);
  $("gradient-run").addEventListener("click", () => {
    const i = shownIndex(store.state);
    if (analyze({ kind: "gradient", index: i }) === null) showBanner("No connection can carry the request: open the session's recording to analyse it.");
  });
  $("gradient-cancel").addEventListener("click", () => cancelJob($("gradient-cancel").dataset.job ?? ""));
  bindCompare(store.state.token);
  $("present").addEventListener("click", () => setPresent(true));
  $("present-exit").addEventListener("click", () => setPresent(false));
  document.addEventListener("fullscreenchange", () => {
    if (!document.fullscreenElement && store.state.present) setPresent(false);  // the browser's own exit (Esc, F11)
  });
  bindKeys({
    move,
    jump: (to) => pin(to === "first" ? 0 : store.state.steps.length - 1, page.detailOpen),
    unpin: () => (store.state.pinned === null && store.state.present ? setPresent(false) : pin(null)),
    present: () => setPresent(!store.state.present),
    playPause,
    method: (k) => {
      const m = ALL_METHODS[k];
      if (m) store.set({ view: { method: m } });
    },
  });
}

/**
 * Presentation mode: the X-rays and the report, large, nothing else; full screen where
 * the browser allows it (a refusal leaves the mode on in the window).
 * @param {boolean} on
 */
function setPresent(on) {
  if (on === store.state.present) return;
  store.set({ present: on });
  if (on && !document.fullscreenElement) document.documentElement.requestFullscreen?.().catch(() => {});
  if (!on && document.fullscreenElement) void document.exitFullscreen().catch(() => {});
}

function exportView() {
  const s = store.state;
  const picture = panes.snapshot();
  if (!picture) return;
  const step = shownStep(s);
  const what = step ? `#${step.i} “${visibleToken(step.text)}” · ${methodLabel($("stage").dataset.method ?? s.view.method)}` : "";
  const standIn = s.start?.model.standIn ?? true;
  const title = ["medviz", s.start?.model.name ?? "", what].filter(Boolean).join(" · ");
  void downloadPng(captioned(picture, title, modelNote(standIn), standIn), `medviz_${s.start?.session ?? "view"}_token${shownIndex(s)}_${s.view.method}.png`);
}

function exportPanel() {
  const s = store.state;
  const raw = s.pinned !== null ? s.steps[s.pinned] : shownStep(s);
  const image = s.view.image;
  const whole = raw ? blockOf(raw, image, gradientMaps(s.jobs)) : null;
  const block = whole ? shownBlock(s, whole, image, s.view.method) : null;
  if (!raw || !block || !page.xrays[image]) return;
  const picture = exportDetail({ ...detailContext(s, image), step: raw, block }, `medviz · token #${raw.i} “${visibleToken(raw.text)}” · ${s.start?.model.name ?? ""}`);
  const standIn = s.start?.model.standIn ?? true;
  void downloadPng(captioned(picture, "", modelNote(standIn), standIn), `medviz_${s.start?.session ?? "panel"}_token${raw.i}_analysis.png`);
}

bind();
showDisplay(store.state.view);
showFiles();
const watchId = query.get("watch");
const replayId = query.get("replay");
const embedded = embeddedRecording();  // the offline player's recording (`medviz html`): no server to ask
if (embedded) bootOffline(embedded, location.hash);
else {
  void loadHealth();
  void loadPacs();
  if (watchId) openWatch(watchId);
  else if (replayId) openReplay(replayId);
  else resumeOwned();  // a reload of the page that owns a live session takes it back
}
store.subscribe(() => player.render(store.state.replay, store.state.cursor, store.state.phase === "ended"));
store.subscribe((s) => renderOfflineButton(/** @type {HTMLAnchorElement} */ ($("offline-player")), s.replay?.recording ?? "", (path) => apiUrl(path, s.token)));
store.subscribe((s, changed) => {
  if (changed.has("start") && s.start && s.start.session !== $("files").dataset.session) {
    $("files").dataset.session = s.start.session;
    showSessionFiles(s.start);
  }
});
requestRender();
