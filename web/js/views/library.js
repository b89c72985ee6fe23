// @ts-check
/**
 * The recordings library: list, open, download and delete recorded sessions.
 *
 * Owns the HTTP calls to /api/recordings and the list that shows them: each with its
 * thumbnail (the server's /api/recordings/{id}/thumbnail), the images' labels, the question
 * or preset, the model and how the session ended. Playing one is app.js's job (it opens
 * the replay socket); this module only reports which one was chosen.
 */

import { apiUrl } from "../page.js";

/**
 * @typedef {{id: string, created: number | null, steps: number | null, size: number | null,
 *   model: string | null, question: string | null, complete: boolean | null, preset: string | null,
 *   labels: string[], ending: string | null}} Recording  ending: ended | stopped | failed | cut
 */

/** How a recorded session ended, in words. */
const ENDINGS = /** @type {Record<string, string>} */ ({ ended: "complete", stopped: "stopped", failed: "failed", cut: "cut short" });

/** @param {Record<string, unknown>} o @param {string[]} keys */
function pick(o, keys) {
  for (const k of keys) if (o[k] !== undefined && o[k] !== null) return o[k];
  return null;
}

/**
 * @param {unknown} item @returns {Recording | null}
 */
function toRecording(item) {
  if (typeof item === "string") return { id: item, created: null, steps: null, size: null, model: null, question: null, complete: null, preset: null, labels: [], ending: null };
  if (typeof item !== "object" || item === null) return null;
  const o = /** @type {Record<string, unknown>} */ (item);
  const id = pick(o, ["id", "recording", "name"]);
  if (typeof id !== "string") return null;
  const n = (/** @type {unknown} */ v) => (typeof v === "number" ? v : null);
  const s = (/** @type {unknown} */ v) => (typeof v === "string" ? v : null);
  const complete = pick(o, ["complete", "finished"]);
  const labels = Array.isArray(o.labels) ? o.labels.map((l) => (typeof l === "string" ? l : "")) : [];
  return {
    id, created: n(pick(o, ["created", "mtime", "modified"])), steps: n(pick(o, ["steps", "tokens"])),
    size: n(pick(o, ["size", "bytes"])), model: s(pick(o, ["model"])) || null, question: s(pick(o, ["question"])),
    complete: typeof complete === "boolean" ? complete : null, preset: s(pick(o, ["preset"])), labels,
    ending: s(pick(o, ["ending"])) ?? (complete === false ? "cut" : null),
  };
}

/**
 * @param {string | null} token @returns {Promise<Recording[]>} newest first
 */
export async function listRecordings(token) {
  const res = await fetch(apiUrl("/api/recordings", token));
  if (!res.ok) throw new Error(`the server answered ${res.status} for the recordings list`);
  const body = await res.json();
  const items = Array.isArray(body) ? body : Array.isArray(body?.recordings) ? body.recordings : [];
  const list = /** @type {Recording[]} */ (items.map(toRecording).filter(Boolean));
  return list.sort((a, b) => (b.created ?? 0) - (a.created ?? 0));
}

/** @param {string} id @param {string | null} token */
export async function deleteRecording(id, token) {
  const res = await fetch(apiUrl(`/api/recordings/${encodeURIComponent(id)}`, token), { method: "DELETE" });
  if (!res.ok) throw new Error(`the server answered ${res.status} when deleting ${id}`);
}

/** @param {number | null} bytes */
function size(bytes) {
  if (bytes === null) return "";
  return bytes > 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

/**
 * The images of a recorded study: their labels, or how many there are when none has one.
 * @param {string[]} labels one per image
 */
export function imagesText(labels) {
  if (labels.length === 0) return "";
  if (labels.some(Boolean)) return labels.map((l, k) => l || `Image ${k + 1}`).join(" + ");
  return labels.length === 1 ? "1 image" : `${labels.length} images`;
}

/**
 * @param {HTMLElement} el @param {Recording[]} list @param {string | null} token
 * @param {{play: (id: string) => void, remove: (id: string) => void}} on
 */
export function renderLibrary(el, list, token, on) {
  if (list.length === 0) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "No recordings yet. Switch on “Record for replay” before starting a session.";
    el.replaceChildren(p);
    return;
  }
  el.replaceChildren(...list.map((r) => {
    const row = document.createElement("li");
    row.className = "rec";
    row.dataset.id = r.id;
    const info = document.createElement("div");
    info.className = "rec-info";
    const title = document.createElement("strong");
    title.textContent = r.question ? `“${r.question}”` : `Full report${r.preset && r.preset !== "medviz" ? ` (prompt ${r.preset})` : ""}`;
    const what = document.createElement("span");
    what.className = "rec-what";
    what.textContent = [imagesText(r.labels), r.model ?? ""].filter(Boolean).join(" · ");
    const meta = document.createElement("span");
    meta.className = "rec-meta";
    meta.textContent = [
      r.created ? new Date(r.created * 1000).toLocaleString() : r.id,
      r.steps !== null ? `${r.steps} ${r.steps === 1 ? "token" : "tokens"}` : "", size(r.size),
    ].filter(Boolean).join(" · ");
    info.append(title, what, meta);
    const thumb = document.createElement("img");
    thumb.className = "rec-thumb";
    thumb.alt = "";
    thumb.loading = "lazy";
    thumb.src = apiUrl(`/api/recordings/${encodeURIComponent(r.id)}/thumbnail`, token);
    thumb.addEventListener("error", () => { thumb.style.visibility = "hidden"; }, { once: true });
    const ending = document.createElement("span");
    ending.className = "rec-end";
    if (r.ending) {
      ending.dataset.ending = r.ending;
      row.dataset.ending = r.ending;
    }
    ending.textContent = r.ending ? ENDINGS[r.ending] ?? r.ending : "";
    const play = document.createElement("button");
    play.className = "primary";
    play.textContent = "▶ Play";
    play.addEventListener("click", () => on.play(r.id));
    const dl = document.createElement("a");
    dl.className = "button";
    dl.href = apiUrl(`/api/recordings/${encodeURIComponent(r.id)}`, token);
    dl.download = `${r.id}.medviz`;
    dl.textContent = "Download";
    const del = document.createElement("button");
    del.className = "danger";
    del.textContent = "Delete";
    del.addEventListener("click", () => on.remove(r.id));
    row.append(thumb, info, ending, play, dl, del);
    return row;
  }));
}
