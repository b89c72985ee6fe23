// @ts-check
/**
 * The sidebar's inputs: the new-session form (file drop/pick, prompt and its preset, parameters, record)
 * and the display settings (method, colormap, contrast, opacity, window/level, toggles).
 *
 * Owns reading and writing these form elements. Display settings go straight into the
 * store's `view`; the session form is read on demand by `readRequest`. Starting and
 * stopping sessions is app.js's job.
 */

import { CONTRAST_MODES } from "../draw/contrast.js";
import { methodLabel } from "../format.js";
import { PALETTES, cssGradient, palette } from "../draw/palette.js";
import { DEFAULT_VIEW } from "../state.js";
import { METHODS_ORDER } from "../methods.js";

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
/** The display's checkboxes, each a boolean of the view with the same name. */
const TOGGLES = /** @type {const} */ (["regions", "trail", "fade", "invert", "context"]);

/** @param {string} id */
const input = (id) => /** @type {HTMLInputElement} */ (document.getElementById(id));

/**
 * Wire the file picker and the drop zone: the files chosen or dropped together go to `onFiles`.
 * @param {(files: File[]) => void} onFiles
 */
export function bindFileInput(onFiles) {
  const drop = $("drop");
  const file = input("file");
  file.addEventListener("change", () => {
    if (file.files?.length) onFiles(Array.from(file.files));
    file.value = "";
  });
  drop.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      file.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const files = /** @type {DragEvent} */ (ev).dataTransfer?.files;
    if (files?.length) onFiles(Array.from(files));
  });
  // a file dropped anywhere else must not navigate away from a running session
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());
}

/** Enable the question box only in question mode. */
export function bindPromptMode() {
  const question = /** @type {HTMLTextAreaElement} */ (document.getElementById("question"));
  for (const radio of document.querySelectorAll('input[name="prompt"]')) {
    radio.addEventListener("change", () => {
      question.disabled = !isQuestionMode();
      if (!question.disabled) question.focus();
    });
  }
}

function isQuestionMode() {
  return /** @type {HTMLInputElement | null} */ (document.querySelector('input[name="prompt"]:checked'))?.value === "question";
}

/**
 * Show the model's suggested length and temperature in the empty fields (what an empty field gets).
 * @param {unknown} params /api/health's `params` (wire names), or null when the server does not know them
 */
export function showSuggested(params) {
  const p = /** @type {Record<string, unknown> | null} */ (params && typeof params === "object" ? params : null);
  if (typeof p?.max_new_tokens === "number") input("max-tokens").placeholder = `model's: ${p.max_new_tokens}`;
  if (typeof p?.temperature === "number") input("temperature").placeholder = `model's: ${p.temperature}`;
}

/**
 * The session form's settings as request fields (the images come from the store), or an error sentence.
 * @returns {Omit<import("../wire/protocol.js").StartRequest, "images" | "labels"> | string}
 */
export function readRequest() {
  const question = /** @type {HTMLTextAreaElement} */ (document.getElementById("question")).value.trim();
  // An empty field is left to the model's suggestion (the server fills it), as `medviz generate` does.
  const maxNewTokens = input("max-tokens").value.trim() === "" ? undefined : Number(input("max-tokens").value);
  const temperature = input("temperature").value.trim() === "" ? undefined : Number(input("temperature").value);
  if (isQuestionMode() && question === "") return "Type a question, or choose “Full report”.";
  if (maxNewTokens !== undefined && (!Number.isInteger(maxNewTokens) || maxNewTokens < 1 || maxNewTokens > Number(input("max-tokens").max))) {
    return `Max tokens must be a whole number from 1 to ${input("max-tokens").max}.`;
  }
  // the server's range (docs/protocol.md): 0 (deterministic) or 0.01..5; the form offers the useful part of it
  if (temperature !== undefined && !(temperature === 0 || (temperature >= 0.01 && temperature <= 2))) return "Temperature must be 0 (deterministic) or between 0.01 and 2.";
  const preset = /** @type {HTMLSelectElement} */ ($("preset")).value;
  return {
    question: isQuestionMode() ? question : null, preset: preset || null,
    params: { ...(maxNewTokens !== undefined ? { maxNewTokens } : {}), ...(temperature !== undefined ? { temperature } : {}) },
    record: input("record").checked,
  };
}

/**
 * Fill the display selects and keep every display input in sync with the store.
 * @param {import("../state.js").Store} store @param {string[]} [methods] the method menu, in order
 */
export function bindDisplay(store, methods = METHODS_ORDER) {
  const method = /** @type {HTMLSelectElement} */ ($("method"));
  method.replaceChildren(...methods.map((m) => new Option(methodLabel(m), m)));
  const pal = /** @type {HTMLSelectElement} */ ($("palette"));
  pal.replaceChildren(...PALETTES.map((p) => new Option(p.label, p.id)));
  const contrast = /** @type {HTMLSelectElement} */ ($("contrast"));
  contrast.replaceChildren(...CONTRAST_MODES.map((c) => new Option(c.label, c.id)));
  for (const [id, key] of /** @type {[string, "method" | "palette" | "contrast"][]} */ ([["method", "method"], ["palette", "palette"], ["contrast", "contrast"]])) {
    $(id).addEventListener("change", (ev) => store.set({ view: { [key]: /** @type {HTMLSelectElement} */ (ev.target).value } }));
  }
  for (const key of /** @type {("opacity" | "level" | "window")[]} */ (["opacity", "level", "window"])) {
    input(key).addEventListener("input", (ev) => store.set({ view: { [key]: Number(/** @type {HTMLInputElement} */ (ev.target).value) } }));
  }
  for (const key of TOGGLES) {
    input(key).addEventListener("change", (ev) => store.set({ view: { [key]: /** @type {HTMLInputElement} */ (ev.target).checked } }));
  }
  $("reset-view").addEventListener("click", () => store.set({ view: { ...DEFAULT_VIEW } }));
}

/**
 * Show the store's view in the inputs (after keyboard shortcuts or a reset).
 * @param {import("../state.js").View} v
 */
export function showDisplay(v) {
  /** @type {HTMLSelectElement} */ ($("method")).value = v.method;
  /** @type {HTMLSelectElement} */ ($("palette")).value = v.palette;
  /** @type {HTMLSelectElement} */ ($("contrast")).value = v.contrast;
  input("opacity").value = String(v.opacity);
  input("level").value = String(v.level);
  input("window").value = String(v.window);
  $("opacity-out").textContent = `${Math.round(v.opacity * 100)}%`;
  $("level-out").textContent = String(v.level);
  $("window-out").textContent = String(v.window);
  for (const key of TOGGLES) input(key).checked = v[key];
  $("legend-bar").style.background = cssGradient(palette(v.palette));
}
