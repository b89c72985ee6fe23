// @ts-check
/**
 * Wiring: the store, the sockets and the views, and nothing else.
 *
 * Owns the session lifecycle (start, stop, watch, replay), turning frames into state, and
 * one batched render per animation frame that asks each view to bring itself up to date.
 * Every drawing and decoding detail lives in the module that owns it.
 */

import { Animator } from "./animator.js";
import { displayValues, summarise } from "./contrast.js";
import { bindDisplay, bindFileInput, bindPromptMode, readRequest, showDisplay } from "./controls.js";
import { exportDetail, renderDetail, renderOverview } from "./detail.js";
import { downloadPng } from "./export.js";
import { END_WORDS, errorWords, methodLabel, pct, sci, visibleToken } from "./format.js";
import { bindKeys } from "./keys.js";
import { apiUrl, deleteRecording, listRecordings, renderLibrary } from "./library.js";
import { METHODS_ORDER } from "./methods.js";
import { drawStrip, renderMethodGrid, renderReport, renderStats, stripIndexAt } from "./panels.js";
import { palette } from "./palette.js";
import { Player } from "./player.js";
import { replayRecording, startSession, watchSession } from "./session.js";
import { Stage } from "./stage.js";
import { Store, shownIndex, shownStep } from "./state.js";
import { applyWindow, loadXRay } from "./xray.js";

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const TRAIL = 10;
const store = new Store();
const query = new URLSearchParams(location.search);
store.state.token = query.get("token");

/** @type {import("./xray.js").XRay | null} */ let xray = null;
/** @type {{channel: import("./session.js").Channel, cancel?: () => void, pause?: () => void,
 *   resume?: () => void, seek?: (i: number) => void, speed?: (v: number) => void} | null} */ let link = null;
let rejoins = 0;
let detailTab = /** @type {"token" | "overview"} */ ("token");

const stage = new Stage(/** @type {HTMLCanvasElement} */ ($("stage")), $("stage-box"));
const animator = new Animator(drawStage);
const player = new Player($("player"), {
  playPause: () => void playPause(),
  speed: (v) => link?.speed?.(v),
  seek: (i) => seekTo(i),
});

// -- frames -> state ---------------------------------------------------------------------

/** @param {import("./protocol.js").Frame} f */
function onFrame(f) {
  const s = store.state;
  if (f.type === "start") {
    const again = s.start?.session === f.session;
    store.set({ start: f, phase: "running", queuePosition: null, error: null, ...(again ? {} : { steps: [], end: null, cursor: -1, pinned: null }) });
    if (!again) void showImage(new Blob([/** @type {BlobPart} */ (f.image.png)], { type: "image/png" }));
  } else if (f.type === "step") {
    s.steps[f.i] = f;
    store.set({ steps: s.steps, cursor: f.i, phase: "running" });
  } else if (f.type === "end") {
    store.set({ end: f, phase: "ended" });
    if (f.reason === "error") showBanner(`The generation failed: ${f.message || "no detail given"}.`);
  } else if (f.type === "error") {
    store.set({ error: { code: f.code, message: f.message }, phase: "closed" });
    showBanner(errorWords(f.code, f.message));
  } else if (f.type === "queued") {
    store.set({ queuePosition: f.position, phase: "queued" });
  } else if (f.type === "replay") {
    store.set({ replay: { recording: f.recording, steps: f.steps, speed: f.speed, paused: f.paused, at: f.at } });
  }
}

/** @type {import("./session.js").Handlers} */
const handlers = {
  frame: onFrame,
  problem: (message) => showBanner(message),
  closed: (why, clean) => {
    const s = store.state;
    if (s.phase === "ended" || s.error) return;
    if (s.mode === "watch" && s.start && rejoins < 3) {
      rejoins += 1;
      setTimeout(() => openWatch(/** @type {string} */ (s.start?.session)), 600);
      return;
    }
    store.set({ phase: "closed" });
    if (!clean || s.phase !== "idle") showBanner(why);
  },
};

/** @param {Blob} blob */
async function showImage(blob) {
  try {
    xray = await loadXRay(blob);
    applyWindow(xray, store.state.view.window, store.state.view.level, store.state.view.invert);
    $("placeholder").hidden = true;
  } catch {
    xray = null;
    $("placeholder").hidden = false;
    $("placeholder").textContent = "This file has no browser preview (DICOM?). The image appears when the session starts.";
  }
  lastKey = "";
  requestRender();
}

// -- sessions ----------------------------------------------------------------------------

/** @param {"live" | "watch" | "replay"} mode */
function fresh(mode) {
  link?.channel.close();
  link = null;
  store.resetSession();
  store.set({ mode, phase: "connecting" });
  hideBanner();
  closeDetail();
  showTab("viewer");
}

function start() {
  const s = store.state;
  const form = readRequest();
  if (typeof form === "string") return showBanner(form);
  if (!s.file) return showBanner("Choose a chest X-ray first (PNG, JPEG or DICOM).");
  fresh("live");
  history.replaceState(null, "", pageUrl({}));
  link = startSession({ image: s.file.bytes, ...form }, s.token, handlers);
}

function stop() {
  const s = store.state;
  if (s.mode === "live" && link?.cancel && s.phase !== "connecting") link.cancel();
  else {
    link?.channel.close();
    store.set({ phase: "closed" });
  }
}

/** @param {string} id */
function openWatch(id) {
  fresh("watch");
  history.replaceState(null, "", pageUrl({ watch: id }));
  link = watchSession(id, store.state.token, handlers);
}

/** @param {string} id */
function openReplay(id) {
  fresh("replay");
  history.replaceState(null, "", pageUrl({ replay: id }));
  link = replayRecording(id, store.state.token, handlers);
}

/** @returns {boolean} whether a replay took the key */
function playPause() {
  const r = store.state.replay;
  if (!r || !link) return false;
  if (store.state.phase === "ended") {
    link.seek?.(0);
    link.resume?.();
  } else if (r.paused) link.resume?.();
  else link.pause?.();
  return true;
}

/** @param {number} i */
function seekTo(i) {
  const s = store.state;
  // after the end, scrubbing inspects tokens: stay paused where the user let go
  const ended = s.phase === "ended";
  if (ended && s.replay && !s.replay.paused) link?.pause?.();
  link?.seek?.(i);
  store.set({ pinned: null, ...(s.steps[i] ? { cursor: i } : {}), ...(ended ? { phase: "running" } : {}) });
}

/** @param {Record<string, string>} extra @returns {string} this page's URL with the token kept */
function pageUrl(extra) {
  const url = new URL(location.pathname, location.origin);
  if (store.state.token) url.searchParams.set("token", store.state.token);
  for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
  return url.toString();
}

// -- pinning -----------------------------------------------------------------------------

/** @param {number | null} i @param {boolean} [open] */
function pin(i, open = true) {
  const s = store.state;
  if (i === null) {
    store.set({ pinned: null });
    closeDetail();
    return;
  }
  const last = s.steps.length - 1;
  if (last < 0) return;
  store.set({ pinned: Math.max(0, Math.min(last, i)) });
  if (open) openDetail("token");
}

/** @param {number} delta */
function move(delta) {
  const s = store.state;
  let i = shownIndex(s) + delta;
  while (i >= 0 && i < s.steps.length && !s.steps[i]) i += delta;
  if (i >= 0 && i < s.steps.length) pin(i, !$("detail").hidden);
}

/** @param {"token" | "overview"} tab */
function openDetail(tab) {
  detailTab = tab;
  $("detail").hidden = false;
  $("detail-tab-token").setAttribute("aria-selected", String(tab === "token"));
  $("detail-tab-overview").setAttribute("aria-selected", String(tab === "overview"));
  detailKey = "";
  requestRender();
}

function closeDetail() {
  $("detail").hidden = true;
}

// -- rendering ---------------------------------------------------------------------------

let lastKey = "";
let gridKey = "";
let detailKey = "";
let queued = false;

function requestRender() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => {
    queued = false;
    render();
  });
}

/** @returns {[number, number]} */
function gridOf() {
  return store.state.start?.model.grid ?? [16, 16];
}

/** @param {Float32Array} values */
function drawStage(values) {
  const s = store.state;
  const step = shownStep(s);
  const i = shownIndex(s);
  const trail = [];
  if (s.view.trail) {
    for (let k = Math.max(0, i - TRAIL + 1); k <= i; k++) if (s.steps[k] && !s.steps[k].special) trail.push(s.steps[k].peak);
  }
  stage.draw({
    xray: xray?.canvas ?? null, values: step ? values : null, grid: gridOf(), table: palette(s.view.palette).table,
    opacity: s.view.opacity, fade: s.view.fade, regions: s.view.regions && step ? step.regions : [],
    trail, markers: xray !== null,
  });
  stage.canvas.dataset.animating = String(animator.busy);
}

function render() {
  const s = store.state;
  const step = shownStep(s);
  const i = shownIndex(s);
  const method = step && !step.maps[s.view.method] ? Object.keys(step.maps)[0] : s.view.method;
  const key = `${s.start?.session}|${i}|${method}|${s.view.contrast}|${xray ? 1 : 0}`;
  if (key !== lastKey) {
    const [, before, ...rest] = lastKey.split("|");
    const jump = rest.join("|") !== key.split("|").slice(2).join("|") || s.pinned !== null || Math.abs(Number(before) - i) > 1;
    lastKey = key;
    const map = step?.maps[method];
    stage.canvas.dataset.step = String(map ? i : -1);
    stage.canvas.dataset.method = method;
    if (map) animator.setTarget(displayValues(map, s.view.contrast), jump);
    else drawStage(new Float32Array(0));
  } else if (!animator.busy) animator.redraw();
  renderChrome(s, step, i);
  const gKey = `${key}|${s.view.palette}|${s.view.opacity}|${s.view.window}|${s.view.level}|${s.view.invert}`;
  if (gKey !== gridKey) {
    gridKey = gKey;
    const methods = s.start?.methods.length ? METHODS_ORDER.filter((m) => s.start?.methods.includes(m)) : METHODS_ORDER;
    renderMethodGrid($("methods-grid"), step, methods, { method, contrast: s.view.contrast }, gridOf(), palette(s.view.palette).table, xray?.canvas ?? null, s.view.opacity);
    renderStats($("stats"), step);
  }
  renderReport($("report"), s.steps, i, s.pinned, s.pinned === null);
  drawStrip(/** @type {HTMLCanvasElement} */ ($("strip")), s.steps, i, Math.max(s.replay?.steps ?? 0, s.steps.length));
  player.render(s.replay, s.cursor, s.phase === "ended");
  renderDetailPanel(s, gKey);
}

/**
 * Status line, caption, buttons, legend: the small text around the views.
 * @param {import("./state.js").State} s @param {import("./protocol.js").StepFrame | null} step @param {number} i
 */
function renderChrome(s, step, i) {
  const status = $("status");
  status.dataset.phase = s.phase;
  status.textContent = statusText(s);
  document.body.dataset.phase = s.phase;
  document.body.dataset.mode = s.mode;
  const count = s.steps.filter(Boolean).length;
  $("progress").textContent = count ? `${count} token${count === 1 ? "" : "s"}` : "";
  $("caption").textContent = step
    ? `#${i} “${visibleToken(step.text)}” · ${methodLabel(stage.canvas.dataset.method ?? "")} · peak ${step.zone} · image reliance ${pct(step.mass)}${s.pinned !== null ? " · pinned" : ""}`
    : s.start ? "Waiting for the first token…" : s.file ? `${s.file.name} · press Start` : "No session yet";
  const busy = s.mode === "live" && ["connecting", "queued", "running"].includes(s.phase);
  /** @type {HTMLButtonElement} */ ($("start")).disabled = !s.file || busy;
  /** @type {HTMLButtonElement} */ ($("stop")).disabled = !["connecting", "queued", "running"].includes(s.phase);
  /** @type {HTMLButtonElement} */ ($("export-view")).disabled = !step;
  /** @type {HTMLButtonElement} */ ($("open-overview")).disabled = count === 0 || !xray;
  const share = $("share");
  share.hidden = !(s.start && s.mode !== "replay" && s.phase === "running");
  if (s.start) share.dataset.url = pageUrl({ watch: s.start.session });
  const map = step?.maps[stage.canvas.dataset.method ?? ""];
  const range = map && s.view.contrast === "percentile" ? summarise(map) : null;
  $("legend-lo").textContent = map ? sci(range ? range.p5 : map.lo) : "low";
  $("legend-hi").textContent = map ? sci(range ? range.p95 : map.hi) : "high";
}

/** @param {import("./state.js").State} s */
function statusText(s) {
  const count = s.steps.filter(Boolean).length;
  switch (s.phase) {
    case "connecting": return "Connecting…";
    case "queued": return `Waiting for the model · position ${s.queuePosition ?? "?"} in line`;
    case "running":
      if (s.mode === "replay") return `Replay · ${s.replay?.paused ? "paused" : `${s.replay?.speed ?? 1}×`}`;
      return `${s.mode === "watch" ? "Watching live" : "Generating"} · ${count} tokens`;
    case "ended": return `Done · ${END_WORDS[s.end?.reason ?? ""] ?? s.end?.reason} · ${s.end?.tokens ?? count} tokens in ${((s.end?.totalMs ?? 0) / 1000).toFixed(1)} s`;
    case "closed": return s.error ? "Stopped · see the message above" : "Disconnected";
    default: return "Ready";
  }
}

/**
 * @param {import("./state.js").State} s @param {string} gKey what the picture depends on
 */
function renderDetailPanel(s, gKey) {
  if ($("detail").hidden || !xray || !s.start) return;
  const dKey = `${detailTab}|${s.pinned}|${gKey}|${detailTab === "overview" ? s.steps.length : ""}`;
  if (dKey === detailKey) return;
  detailKey = dKey;
  const c = detailContext(s);
  $("detail-tiles").hidden = detailTab !== "token";
  $("overview").hidden = detailTab !== "overview";
  const step = s.pinned !== null ? s.steps[s.pinned] : shownStep(s);
  $("detail-h").textContent = detailTab === "token" && step ? `Token #${step.i} “${visibleToken(step.text)}”` : "How attention moves across the report";
  if (detailTab === "token" && step) renderDetail($("detail-tiles"), { ...c, step });
  if (detailTab === "overview") renderOverview($("overview"), s.steps, c, s.pinned);
}

/** @param {import("./state.js").State} s */
function detailContext(s) {
  return {
    grid: gridOf(), layers: s.start?.model.layers ?? 0, xray: /** @type {HTMLCanvasElement} */ (xray?.canvas),
    table: palette(s.view.palette).table, contrast: s.view.contrast, opacity: s.view.opacity,
    method: s.view.method,
  };
}

// -- banner, tabs, health ----------------------------------------------------------------

/** @param {string} text */
function showBanner(text) {
  $("banner-text").textContent = text;
  $("banner").hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

/** @param {"viewer" | "library"} tab */
function showTab(tab) {
  $("viewer").hidden = tab !== "viewer";
  $("library").hidden = tab !== "library";
  $("tab-viewer").setAttribute("aria-selected", String(tab === "viewer"));
  $("tab-library").setAttribute("aria-selected", String(tab === "library"));
  if (tab === "library") void refreshLibrary();
}

async function refreshLibrary() {
  const token = store.state.token;
  try {
    const list = await listRecordings(token);
    renderLibrary($("library-list"), list, token, {
      play: openReplay,
      remove: (id) => {
        if (!confirm(`Delete recording ${id}? This cannot be undone.`)) return;
        deleteRecording(id, token).then(refreshLibrary, (err) => showBanner(`Could not delete: ${err.message}`));
      },
    });
  } catch (err) {
    showBanner(`The recordings could not be listed: ${/** @type {Error} */ (err).message}`);
  }
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
    $("server-info").textContent = [h.model, h.device].filter(Boolean).join(" · ") || "server ready";
  } catch {
    $("server-info").textContent = "server unreachable";
  }
}

// -- wiring ------------------------------------------------------------------------------

function bind() {
  store.subscribe((s, changed) => {
    if (xray && (changed.has("view.window") || changed.has("view.level") || changed.has("view.invert"))) {
      applyWindow(xray, s.view.window, s.view.level, s.view.invert);
    }
    if ([...changed].some((k) => k.startsWith("view."))) showDisplay(s.view);
    requestRender();
  });
  bindDisplay(store);
  bindPromptMode();
  bindFileInput(async (file) => {
    const bytes = new Uint8Array(await file.arrayBuffer());
    store.set({ file: { name: file.name, bytes } });
    $("drop-text").textContent = `${file.name} · ${Math.round(bytes.length / 1024)} kB`;
    if (store.state.mode === "idle" || store.state.phase !== "running") void showImage(new Blob([bytes]));
  });
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("banner-close").addEventListener("click", hideBanner);
  $("tab-viewer").addEventListener("click", () => showTab("viewer"));
  $("tab-library").addEventListener("click", () => showTab("library"));
  $("refresh-library").addEventListener("click", () => void refreshLibrary());
  $("share").addEventListener("click", () => {
    const url = $("share").dataset.url ?? "";
    navigator.clipboard?.writeText(url).then(
      () => showBanner(`Watch link copied: ${url}`),
      () => showBanner(`Share this watch link: ${url}`),
    );
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
  $("overview").addEventListener("click", (ev) => {
    const thumb = /** @type {HTMLElement} */ (ev.target).closest(".thumb");
    if (thumb instanceof HTMLElement) {
      pin(Number(thumb.dataset.i), false);
      openDetail("token");
    }
  });
  $("open-overview").addEventListener("click", () => openDetail("overview"));
  $("detail-tab-token").addEventListener("click", () => openDetail("token"));
  $("detail-tab-overview").addEventListener("click", () => openDetail("overview"));
  $("close-detail").addEventListener("click", () => pin(null));
  $("prev-token").addEventListener("click", () => move(-1));
  $("next-token").addEventListener("click", () => move(1));
  $("export-view").addEventListener("click", exportView);
  $("export-detail").addEventListener("click", exportPanel);
  bindKeys({
    move,
    jump: (to) => pin(to === "first" ? 0 : store.state.steps.length - 1, !$("detail").hidden),
    unpin: () => pin(null),
    playPause,
    method: (k) => {
      const m = METHODS_ORDER[k];
      if (m) store.set({ view: { method: m } });
    },
  });
}

function exportView() {
  const s = store.state;
  const picture = stage.snapshot();
  if (!picture) return;
  void downloadPng(picture, `medviz_${s.start?.session ?? "view"}_token${shownIndex(s)}_${s.view.method}.png`);
}

function exportPanel() {
  const s = store.state;
  const step = s.pinned !== null ? s.steps[s.pinned] : shownStep(s);
  if (!step || !xray) return;
  const picture = exportDetail({ ...detailContext(s), step }, `medviz · token #${step.i} “${visibleToken(step.text)}” · ${s.start?.model.name ?? ""}`);
  void downloadPng(picture, `medviz_${s.start?.session ?? "panel"}_token${step.i}_analysis.png`);
}

bind();
showDisplay(store.state.view);
void loadHealth();
const watchId = query.get("watch");
const replayId = query.get("replay");
if (watchId) openWatch(watchId);
else if (replayId) openReplay(replayId);
requestRender();
