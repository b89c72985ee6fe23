// @ts-check
/**
 * One batched render per animation frame: every view brought up to date from the store.
 *
 * Owns deciding what each view shows (which image, method, token, contrast) and the small
 * text around them (status, caption, legend, buttons); the drawing itself belongs to the
 * view modules (panes.js, panels.js, detail.js, shares.js and the analysis views).
 */

import { renderAnalysisTab } from "./analyses/analysis-views.js";
import { gradientMaps, renderGradientBox, whyUnavailable } from "./analyses/analysis.js";
import { contextRows, contextTargets } from "./analyses/context.js";
import { renderPrompt, showContext } from "./analyses/context-view.js";
import { displayValues, summarise } from "./draw/contrast.js";
import { renderDetail, renderOverview } from "./analyses/detail.js";
import { dicomBusy, renderDicomStatus } from "./analyses/dicom-export.js";
import { pacsSending, renderPacsSend, whyNotSend } from "./analyses/pacs-send.js";
import { END_WORDS, legendEnds, methodLabel, modelNote, pct, plural, visibleToken } from "./format.js";
import { IMAGE_COLOURS, biplanarPair, blockOf, imageName, imagesOf, viewKind } from "./images.js";
import { METHODS_ORDER } from "./methods.js";
import { drawStrip, renderMethodGrid, renderReport, renderStats } from "./views/panels.js";
import { palette } from "./draw/palette.js";
import { Panes } from "./views/panes.js";
import { $, gridOf, page, shareLink, store } from "./page.js";
import { peakOf, statsFor } from "./draw/regions.js";
import { renderImageSelect, renderShares } from "./views/shares.js";
import { shownIndex, shownStep } from "./state.js";

/**
 * @typedef {import("./state.js").State} State @typedef {import("./wire/protocol.js").StepFrame} StepFrame
 * @typedef {import("./wire/protocol.js").ImageMaps} ImageMaps
 */

const TRAIL = 10;
export const panes = new Panes($("panes"));
let queued = false;
let lastIndex = -1;
let gridKey = "";
let detailKey = "";

export function requestRender() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => {
    queued = false;
    render();
  });
}

/** Forget what was drawn so the next render redraws every view. */
export function invalidate() {
  gridKey = "";
  detailKey = "";
  requestRender();
}

/**
 * The method a view can show for an image block: the chosen one, else consensus (or the first).
 * @param {ImageMaps | null} b @param {string} wanted
 */
export function methodFor(b, wanted) {
  if (!b || b.maps[wanted]) return wanted;
  return b.maps.consensus ? "consensus" : Object.keys(b.maps)[0] ?? wanted;
}

/**
 * Image k's block with the peak, zone and regions of the method shown (regions.js): what
 * every view around the picture reports follows the map on screen.
 * @param {State} s @param {ImageMaps} b @param {number} k @param {string} wanted
 * @returns {ImageMaps}
 */
export function shownBlock(s, b, k, wanted) {
  const method = methodFor(b, wanted);
  if (method === "consensus") return b;
  const info = imagesOf(s.start)[k];
  const x = page.xrays[k];
  const size = /** @type {[number, number]} */ (info ? [info.width, info.height] : x ? [x.width, x.height] : [1, 1]);
  return { ...b, ...statsFor(b, method, gridOf(), size) };
}

function render() {
  const s = store.state;
  const step = shownStep(s);
  const i = shownIndex(s);
  const images = Math.max(1, imagesOf(s.start).length || s.files.length);
  const table = palette(s.view.palette).table;
  const jump = s.pinned !== null || Math.abs(lastIndex - i) > 1;
  lastIndex = i;
  const grads = gradientMaps(s.jobs);
  const gw = gridOf()[1];
  panes.show(Array.from({ length: images }, (_, k) => {
    const raw = step ? blockOf(step, k, grads) : null;
    const method = methodFor(raw, s.view.method);
    const b = raw ? shownBlock(s, raw, k, s.view.method) : null;
    const map = b?.maps[method];
    /** @type {[number, number][]} */ const trail = [];
    if (s.view.trail && !s.present && b) {  // off in presentation mode
      for (let t = Math.max(0, i - TRAIL + 1); t <= i; t++) {
        const p = s.steps[t] && !s.steps[t].special ? blockOf(s.steps[t], k, grads) : null;
        const m = p?.maps[method];
        if (p) trail.push(method === "consensus" || !m ? p.peak : peakOf(m, gw));
      }
    }
    const xray = page.xrays[k] ?? null;
    return {
      key: `${s.start?.session}|${i}|${method}|${s.view.contrast}|${xray ? 1 : 0}`, values: map ? displayValues(map, s.view.contrast) : null,
      jump, step: i, method,
      scene: { xray: xray?.canvas ?? null, grid: gridOf(), table, opacity: s.view.opacity, fade: s.view.fade,
        regions: s.view.regions && b ? b.regions : [], trail, markers: xray !== null && viewKind(imagesOf(s.start)[k]?.label ?? "") !== "lateral" },
      title: s.start ? imageName(s.start, k) : s.files[k]?.label || s.files[k]?.name || `Image ${k + 1}`,
      share: b && images > 1 ? `${pct(b.share)} of attention` : "", colour: IMAGE_COLOURS[k], selected: k === s.view.image,
    };
  }));
  const image = Math.min(s.view.image, images - 1);
  const raw = step ? blockOf(step, image, grads) : null;
  const shown = raw ? shownBlock(s, raw, image, s.view.method) : null;
  renderChrome(s, step, shown, i);
  renderShares($("shares"), s.start, step);
  renderImageSelect($("image-select"), s.start, s.view.image);
  const xray = page.xrays[image]?.canvas ?? null;
  const gKey = `${s.start?.session}|${i}|${image}|${s.view.method}|${s.view.contrast}|${s.view.palette}|${s.view.opacity}|${s.view.window}|${s.view.level}|${s.view.invert}|${xray ? 1 : 0}|${grads[i] ? 1 : 0}`;
  if (gKey !== gridKey) {
    gridKey = gKey;
    const base = s.start?.methods.length ? METHODS_ORDER.filter((m) => s.start?.methods.includes(m)) : METHODS_ORDER;
    const methods = shown?.maps.gradient ? [...base, "gradient"] : base;
    renderMethodGrid($("methods-grid"), shown, methods, { method: methodFor(shown, s.view.method), contrast: s.view.contrast }, gridOf(), table, xray, s.view.opacity);
    renderStats($("stats"), step, shown, studyScope(s, step, image), readRows(s, step));
  }
  renderGradientBox(s, i);
  $("report").dataset.primer = s.start?.prompt.primer ?? ""; // the template's first words, shown before token 0
  renderReport($("report"), s.steps, i, s.pinned, s.pinned === null);
  renderReading(s);
  drawStrip(/** @type {HTMLCanvasElement} */ ($("strip")), s.steps, i, Math.max(s.replay?.steps ?? 0, s.steps.length), images > 1);
  renderDetailPanel(s, gKey);
}

/** @param {State} s @param {StepFrame | null} step @returns {[string, string][]} what the token read, for the statistics */
function readRows(s, step) {
  return s.start && step ? contextRows(contextTargets(s.start, s.steps, step), step) : [];
}

/** The prompt view and the pinned token's context links. @param {State} s */
function renderReading(s) {
  const parts = {
    box: $("reading"), svg: /** @type {SVGSVGElement} */ (/** @type {unknown} */ ($("context-links"))), report: $("report"),
    prompt: $("prompt-text"), summary: $("prompt-summary"),
  };
  renderPrompt(parts, s.start);
  const pinned = s.pinned !== null ? s.steps[s.pinned] : undefined;
  const targets = s.view.context && s.start && pinned ? contextTargets(s.start, s.steps, pinned) : [];
  const from = pinned ? /** @type {HTMLElement | null} */ ($("report").children[pinned.i] ?? null) : null;
  showContext(parts, from, targets, /** @type {HTMLDetailsElement} */ ($("prompt-view")).open);
}

/**
 * Status line, caption, buttons, legend, session line: the small text around the views.
 * @param {State} s @param {StepFrame | null} step @param {ImageMaps | null} shown the step on the shown image
 * @param {number} i
 */
function renderChrome(s, step, shown, i) {
  const status = $("status");
  status.dataset.phase = s.phase;
  status.textContent = statusText(s);
  document.body.dataset.phase = s.phase;
  document.body.dataset.mode = s.mode;
  document.body.dataset.present = String(s.present);
  document.body.dataset.study = String(imagesOf(s.start).length > 1);
  renderModelNote(s);
  const count = s.steps.filter(Boolean).length;
  $("progress").textContent = count ? plural(count, "token") : "";
  $("session-info").textContent = sessionText(s);
  const shownMethod = $("stage").dataset.method ?? "";
  const missing = s.view.method !== shownMethod && step ? ` (no ${methodLabel(s.view.method)} map for this token)` : "";
  const split = step && step.images.length > 1 ? ` (${step.images.map((b, k) => `${imageName(s.start, k)} ${pct(b.share)}`).join(" · ")})` : "";
  $("caption").textContent = step && shown
    ? `#${i} “${visibleToken(step.text)}” · ${methodLabel(shownMethod)}${missing} · peak ${shown.zone} · image reliance ${pct(step.mass)}${split}${s.pinned !== null ? " · pinned" : ""}`
    : s.start ? "Waiting for the first token…" : s.files.length ? `${s.files.map((f) => f.name).join(" + ")} · press Start` : "No session yet";
  const busy = s.mode === "live" && ["connecting", "queued", "running"].includes(s.phase);
  /** @type {HTMLButtonElement} */ ($("start")).disabled = s.files.length === 0 || busy;
  /** @type {HTMLButtonElement} */ ($("stop")).disabled = s.mode === "replay" || !["connecting", "queued", "running"].includes(s.phase);
  /** @type {HTMLButtonElement} */ ($("export-view")).disabled = !step;
  /** @type {HTMLButtonElement} */ ($("open-overview")).disabled = count === 0 || !page.xrays[0];
  const share = $("share");
  const link = shareLink(s);
  share.hidden = link === null;
  if (link && share.dataset.url !== link.url) {
    share.dataset.url = link.url;
    share.title = link.live ? "Copy a link that lets others watch this session live" : "Copy a link to this session's replay";
  }
  const map = shown?.maps[methodFor(shown, s.view.method)];
  const range = map && s.view.contrast === "percentile" ? summarise(map) : null;
  const [lo, hi] = map ? legendEnds(range ? range.p5 : map.lo, range ? range.p95 : map.hi) : ["low", "high"];
  $("legend-lo").textContent = lo;
  $("legend-hi").textContent = hi;
  const legend = $("strip-legend");
  const study = imagesOf(s.start).length > 1;
  if (legend.dataset.study !== String(study)) {
    legend.dataset.study = String(study);
    legend.lastElementChild && (legend.lastElementChild.textContent = study ? "bars stacked: each image's share, in its colour" : "tint = share of attention on the image");
  }
}

/**
 * What the model is, on screen for as long as it is shown: the stand-in banner for an
 * offline stand-in (the session's start frame says; before a session, the server's
 * health), the smaller note for a real model.
 * @param {State} s
 */
function renderModelNote(s) {
  const standIn = s.start ? s.start.model.standIn : typeof s.health?.stand_in === "boolean" ? s.health.stand_in : null;
  const note = $("model-note");
  note.hidden = standIn === null;
  if (standIn === null || note.dataset.standIn === String(standIn)) return;
  note.dataset.standIn = String(standIn);
  note.textContent = modelNote(standIn);
}

/** The session's model, prompt preset and question, in one line. @param {State} s */
function sessionText(s) {
  if (!s.start) return "";
  const q = s.start.prompt.question;
  const asked = q ? `question “${q.length > 60 ? `${q.slice(0, 60)}…` : q}”` : "full report";
  return `${s.start.model.name} · prompt ${s.start.prompt.preset} · ${asked}`;
}

/** @param {State} s */
function statusText(s) {
  const count = s.steps.filter(Boolean).length;
  switch (s.phase) {
    case "connecting": return "Connecting…";
    case "queued": return `Waiting for the model · position ${s.queuePosition ?? "?"} in line`;
    case "running":
      if (s.mode === "replay") return `Replay · ${s.replay?.paused ? "paused" : `${s.replay?.speed ?? 1}×`}`;
      return `${s.mode === "watch" ? "Watching live" : "Generating"} · ${plural(count, "token")}`;
    case "ended": return `Done · ${END_WORDS[s.end?.reason ?? ""] ?? s.end?.reason} · ${plural(s.end?.tokens ?? count, "token")} in ${((s.end?.totalMs ?? 0) / 1000).toFixed(1)} s`;
    case "closed": return s.error ? "Stopped · see the message above" : "Disconnected";
    default: return "Ready";
  }
}

const PANELS = /** @type {[string, import("./page.js").DetailTab][]} */ ([
  ["detail-tiles", "token"], ["overview", "overview"], ["heads", "heads"], ["faith", "faith"], ["agree", "agree"], ["volume", "volume"],
]);

/** @param {State} s @param {string} gKey what the pictures depend on */
function renderDetailPanel(s, gKey) {
  const pair = biplanarPair(s.start);
  $("detail-tab-volume").hidden = pair === null;
  if (page.detailTab === "volume" && !pair) page.detailTab = "token";
  const tab = page.detailTab;
  const image = Math.min(s.view.image, Math.max(0, imagesOf(s.start).length - 1));
  const xray = page.xrays[image];
  const open = page.detailOpen && xray !== undefined && xray !== null && s.start !== null;
  document.body.dataset.detail = open ? "open" : "closed";  // the layout puts it beside the picture where there is room
  if (!open) {
    $("detail").hidden = true;
    return;
  }
  // shown in the same frame that fills it, so nobody sees an empty or stale drawer
  $("detail").hidden = false;
  for (const [id, t] of PANELS) $(id).hidden = tab !== t;
  const raw = s.pinned !== null ? s.steps[s.pinned] : shownStep(s);
  const whole = raw ? blockOf(raw, image, gradientMaps(s.jobs)) : null;
  const block = whole ? shownBlock(s, whole, image, s.view.method) : null;
  const where = imagesOf(s.start).length > 1 && tab !== "volume" ? ` · ${imageName(s.start, image)}` : "";
  $("detail-h").textContent = tab === "overview" ? `How attention moves across the report${where}` : raw ? `Token #${raw.i} “${visibleToken(raw.text)}”${where}` : "No token";
  const noDicom = whyUnavailable("dicom");
  /** @type {HTMLButtonElement} */ ($("export-dicom")).disabled = !raw || raw.special || dicomBusy(s) || noDicom !== "";
  if (noDicom) $("export-dicom").title = noDicom;
  renderDicomStatus($("dicom-status"), s);
  renderSendButton(s, raw);
  if (tab === "heads" || tab === "faith" || tab === "agree" || tab === "volume") {
    if (raw && block) renderAnalysisTab(tab, s, raw, block, image);
    return;
  }
  const dKey = `${tab}|${s.pinned}|${gKey}|${tab === "overview" ? s.steps.length : ""}`;
  if (dKey === detailKey) return;
  detailKey = dKey;
  const c = detailContext(s, image);
  if (tab === "token" && raw && block) renderDetail($("detail-tiles"), { ...c, step: raw, block, scope: studyScope(s, raw, image), extra: readRows(s, raw) });
  if (tab === "overview") {
    const grads = gradientMaps(s.jobs);
    renderOverview($("overview"), s.steps.map((x) => {
      const b = x ? blockOf(x, image, grads) : null;
      return x && b ? { step: x, block: b } : null;
    }), c, s.pinned);
  }
}

/**
 * In a study, the shown image's name and the token's reliance on all images; null for one image.
 * @param {State} s @param {StepFrame | null | undefined} step @param {number} image
 */
function studyScope(s, step, image) {
  return step && imagesOf(s.start).length > 1 ? { label: imageName(s.start, image), total: step.mass } : null;
}

/** @param {State} s @param {number} image */
export function detailContext(s, image) {
  return {
    grid: gridOf(), layers: s.start?.model.layers ?? 0, xray: /** @type {HTMLCanvasElement} */ (page.xrays[image]?.canvas),
    table: palette(s.view.palette).table, contrast: s.view.contrast, opacity: s.view.opacity, method: s.view.method,
  };
}

/**
 * Send to PACS beside Export DICOM: shown when the server has a PACS; disabled with its reason for a watcher or a
 * de-identified source (analyses/pacs-send.js).
 * @param {import("./state.js").State} s @param {import("./wire/protocol.js").StepFrame | null | undefined} raw
 */
function renderSendButton(s, raw) {
  const button = /** @type {HTMLButtonElement} */ ($("send-pacs"));
  button.hidden = !page.pacs;
  if (!page.pacs) return;
  const owned = s.start !== null && page.owned?.session === s.start.session ? page.owned : null;
  const why = whyNotSend(s, owned !== null, owned?.fromPacs, s.token, requestRender);
  button.disabled = !raw || raw.special || pacsSending() || why !== "";
  button.title = why || "Store the token's DICOM objects into the source study in the PACS";
  renderPacsSend($("pacs-send-status"), s);
}
