// @ts-check
/**
 * Send to PACS of the pinned token: the server builds the token's DICOM objects (Secondary Capture,
 * Parametric Map, Segmentation, presentation state) from the source's identified headers and
 * stores them into the source study in its PACS (POST /api/pacs/send; server/pacs/pinned.py).
 *
 * Owns the button's availability and its reason (only the live session's owner, or a replay of a
 * recording that keeps identity on a server that keeps it: a watcher or a de-identified source
 * gets the button disabled with why), the one send under way and the status line with the
 * server's answer: its line and each object's series description and status (no UIDs, no patient data).
 */

import { methodLabel } from "../format.js";
import { apiUrl } from "../page.js";

/**
 * @typedef {{series: string, status: string}} SentObject
 * @typedef {{session: string, index: number, method: string, state: "sending" | "done" | "failed", message: string,
 *   objects: SentObject[]}} Sent
 * @typedef {{session: string, key: string} | {recording: string}} SendFrom  who asks: the live owner, or a replay
 */

/** The server's own line for a source it did not retrieve from its PACS (server/pacs/pinned.py NOT_FROM_PACS). */
export const NOT_FROM_PACS = "only a study opened from the PACS can be sent back to it (this session's images were uploaded)";

/** @type {Sent | null} */
let last = null;
/** @type {Map<string, string>} recording id -> "" (may be sent) or why not; asked once per recording */
const recordings = new Map();

/**
 * Why the pinned token cannot be sent from here ("" when it can; null while a replay's answer is on its way).
 * @param {import("../state.js").State} s @param {boolean} owner this tab owns the live session
 * @param {boolean | undefined} fromPacs this tab started it on a study of the PACS (undefined after a reload: the
 *   server decides) @param {string | null} token @param {() => void} changed called when a replay's answer arrives
 * @returns {string | null}
 */
export function whyNotSend(s, owner, fromPacs, token, changed) {
  if (s.mode === "watch" || (s.mode === "live" && !owner)) return "Only the session's owner can send it to the PACS: a watcher sees de-identified headers, which belong to no study there.";
  if (s.mode === "live" && fromPacs === false) return NOT_FROM_PACS;
  if (s.mode === "replay") {
    const id = s.replay?.recording;
    if (!id) return "This replay has no recording on the server.";
    if (!recordings.has(id)) {
      recordings.set(id, "Asking the server whether this recording may be sent…");
      void fetch(apiUrl(`/api/pacs/sendable?recording=${encodeURIComponent(id)}`, token))
        .then(async (res) => {
          const body = res.ok ? await res.json() : null;
          recordings.set(id, body ? (body.ok ? "" : String(body.why)) : `the server answered ${res.status}`);
        })
        .catch(() => recordings.set(id, "the server could not be asked"))
        .finally(changed);
      return null;
    }
    return recordings.get(id) ?? null;
  }
  return s.mode === "live" ? "" : "Start a session first.";
}

/**
 * Send token `index`'s `method` map to the PACS; the status line follows it.
 * @param {SendFrom} from @param {string} session @param {number} index @param {string} method
 * @param {string | null} token @param {() => void} changed
 */
export async function sendToPacs(from, session, index, method, token, changed) {
  /** @type {Sent} */
  const sent = { session, index, method, state: "sending", message: "sending…", objects: [] };
  last = sent;
  changed();
  try {
    const res = await fetch(apiUrl("/api/pacs/send", token), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...from, index, method }),
    });
    const body = await res.json().catch(() => null);
    if (res.ok && body) {
      sent.state = "done";
      sent.message = String(body.message);
      sent.objects = Array.isArray(body.objects) ? body.objects : [];
    } else {
      sent.state = "failed";
      sent.message = typeof body?.error?.message === "string" ? body.error.message : `the server answered ${res.status}`;
    }
  } catch {
    sent.state = "failed";
    sent.message = "the server could not be reached";
  }
  changed();
}

/** Whether a send is under way (the button waits for it). */
export function pacsSending() {
  return last?.state === "sending";
}

/**
 * The last send of this session: its token and method, the server's line, then each object.
 * @param {HTMLElement} el @param {import("../state.js").State} s
 */
export function renderPacsSend(el, s) {
  const shown = last && last.session === s.start?.session ? last : null;
  el.hidden = shown === null;
  if (!shown) return;
  const key = `${shown.index}|${shown.method}|${shown.state}|${shown.message}|${shown.objects.length}`;
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  const line = document.createElement("p");
  line.className = "dicom-line";
  line.dataset.status = shown.state === "failed" ? "error" : shown.state;
  line.textContent = `Send to PACS of token #${shown.index} · ${methodLabel(shown.method)} · ${shown.message}`;
  const items = document.createElement("ul");
  items.className = "dicom-notes";
  items.replaceChildren(...shown.objects.map((o) => Object.assign(document.createElement("li"), { textContent: `${o.series}: ${o.status}` })));
  el.replaceChildren(line, ...(shown.objects.length ? [items] : []));
}
