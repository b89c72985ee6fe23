// @ts-check
/**
 * The images of a new session: up to four files in prompt order, each with a label
 * (PA, AP, lateral, prior or free text).
 *
 * Owns the list under the drop zone: adding files (up to four; a pick after a session
 * started begins a new study), labels, removing and moving files up. The chosen files live in the
 * store (`files`); sending them is app.js's business.
 */

import { IMAGE_COLOURS } from "../images.js";

export const MAX_IMAGES = 4;
export const MAX_LABEL = 32;

/** @typedef {import("../state.js").ChosenFile} ChosenFile */

/**
 * A label guessed from a file name ("…_lateral.png" -> "lateral"), or "".
 * @param {string} name
 */
export function guessLabel(name) {
  const m = name.toLowerCase().match(/(?:^|[^a-z])(pa|ap|lat|lateral|prior)(?:[^a-z]|$)/);
  if (!m) return "";
  return { pa: "PA", ap: "AP", lat: "lateral", lateral: "lateral", prior: "prior" }[m[1]] ?? "";
}

/**
 * Add files to the study: read, keep at most MAX_IMAGES, say when some were left out.
 * @param {ChosenFile[]} current @param {File[]} picked
 * @returns {Promise<{files: ChosenFile[], dropped: number}>}
 */
export async function addFiles(current, picked) {
  const room = MAX_IMAGES - current.length;
  const taken = picked.slice(0, Math.max(0, room));
  const read = await Promise.all(taken.map(async (f) => ({
    name: f.name, bytes: new Uint8Array(await f.arrayBuffer()), label: guessLabel(f.name),
  })));
  return { files: [...current, ...read], dropped: picked.length - taken.length };
}

/**
 * @param {HTMLElement} el the #files list @param {ChosenFile[]} files
 * @param {{label: (k: number, label: string) => void, remove: (k: number) => void, up: (k: number) => void}} on
 */
export function renderFiles(el, files, on) {
  el.replaceChildren(...files.map((f, k) => {
    const li = document.createElement("li");
    li.dataset.k = String(k);
    const dot = document.createElement("span");
    dot.className = "pane-dot";
    dot.style.background = files.length > 1 ? IMAGE_COLOURS[k] : "transparent";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${k + 1}. ${f.name} · ${Math.max(1, Math.round(f.bytes.length / 1024))} kB`;
    name.title = f.name;
    const label = document.createElement("input");
    label.className = "label";
    label.setAttribute("list", "label-options");
    label.maxLength = MAX_LABEL;
    label.placeholder = "label: PA…";
    label.value = f.label;
    label.setAttribute("aria-label", `Label of image ${k + 1} (PA, lateral, prior or free text)`);
    label.addEventListener("change", () => on.label(k, label.value.trim()));
    const tools = document.createElement("span");
    if (k > 0) tools.append(button("↑", `Move image ${k + 1} up`, () => on.up(k)));
    tools.append(button("×", `Remove image ${k + 1}`, () => on.remove(k)));
    li.append(dot, name, label, tools);
    return li;
  }));
}

/** @param {string} text @param {string} title @param {() => void} act */
function button(text, title, act) {
  const b = document.createElement("button");
  b.className = "ghost";
  b.textContent = text;
  b.title = title;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", (ev) => {
    ev.preventDefault();
    act();
  });
  return b;
}

/**
 * The drop zone's words for the current study.
 * @param {ChosenFile[]} files
 */
export function dropText(files) {
  if (files.length === 0) return "<strong>Drop chest X-rays</strong><br>or click to choose · up to 4 views · PNG, JPEG, DICOM";
  if (files.length >= MAX_IMAGES) return `<strong>${files.length} images</strong> · the most a study takes`;
  return `<strong>${files.length} image${files.length > 1 ? "s" : ""}</strong> · drop or click to add another view`;
}
