// @ts-check
/**
 * The replay's Video button: asks the server for the recording being replayed as an MP4
 * with the method on screen (POST /api/recordings/{id}/video; server/teaching/videos.py renders it
 * in the background, at low priority, with `medviz video`), follows the job and downloads
 * the file when it is made.
 *
 * Owns the button (shown only for a replay of a server recording: never in the offline player), its one-line
 * status beside it and the page's one video on its way.
 * What a frame shows and how it is encoded are the server's (medviz_core/export/video.py).
 */

import { downloadBlob } from "../export.js";
import { methodLabel } from "../format.js";
import { apiUrl, showBanner, store } from "../page.js";

export const POLL_MS = 400;

/**
 * The method a video of this replay shows: the one on screen, or consensus when the recording lacks it.
 * @param {import("../state.js").State} s
 */
export function videoMethod(s) {
  return s.start?.methods.includes(s.view.method) ? s.view.method : "consensus";
}

/**
 * The server's error line of a refused or failed answer.
 * @param {Response} res @returns {Promise<string>}
 */
async function refusal(res) {
  const body = await res.json().catch(() => null);
  return body?.error?.message ?? `the server answered ${res.status}`;
}

export class VideoButton {
  /** @param {HTMLElement} root the player's bar: the button and its status go at its end */
  constructor(root) {
    this.box = document.createElement("span");
    this.box.className = "video-export";
    this.button = document.createElement("button");
    this.button.id = "video";
    this.button.textContent = "Video";
    this.button.title = "Download this recording as an MP4 video for slides (the method on screen)";
    this.status = document.createElement("span");
    this.status.id = "video-status";
    this.status.className = "video-status";
    this.status.setAttribute("aria-live", "polite");
    this.box.append(this.button, this.status);
    root.append(this.box);
    /** @type {string | null} */ this.recording = null;
    this.busy = false;
    this.button.addEventListener("click", () => void this.make());
  }

  /**
   * Shown for a replay of a server recording only: the offline player's replay has recording "" (no server
   * to render it, and nothing is fetched there), so the button is hidden and disabled, as offline-button.js does.
   * @param {import("../state.js").ReplayInfo | null} replay
   */
  render(replay) {
    this.recording = replay && replay.recording !== "" ? replay.recording : null;
    this.box.hidden = this.recording === null;
    this.button.disabled = this.busy || this.recording === null;
  }

  /** @param {string} text a word or two on the bar @param {string} state @param {string} detail its title */
  say(text, state, detail) {
    this.status.textContent = text;
    this.status.title = detail;
    this.status.dataset.state = state;
  }

  async make() {
    const id = this.recording;
    if (id === null || this.busy) return;
    const method = videoMethod(store.state);
    const token = store.state.token;
    this.busy = true;
    this.button.disabled = true;
    this.say("Making…", "rendering", `Making the video of this recording (${methodLabel(method)})`);
    try {
      const asked = await fetch(apiUrl(`/api/recordings/${encodeURIComponent(id)}/video?method=${encodeURIComponent(method)}`, token), { method: "POST" });
      if (!asked.ok) throw new Error(await refusal(asked));
      const { job } = await asked.json();
      const blob = await this.follow(String(job), token);
      const file = `medviz-${id}-${method}.mp4`;
      downloadBlob(blob, file);
      this.say("Downloaded", "done", `Downloaded ${file}`);
    } catch (err) {
      const message = /** @type {Error} */ (err).message;
      this.say("Failed", "failed", `The video could not be made: ${message}`);
      showBanner(`The video could not be made: ${message}`);
    } finally {
      this.busy = false;
      this.button.disabled = this.recording === null;
    }
  }

  /**
   * Ask for the job until the file comes (200) or it fails.
   * @param {string} job @param {string | null} token @returns {Promise<Blob>}
   */
  async follow(job, token) {
    for (;;) {
      const res = await fetch(apiUrl(`/api/videos/${encodeURIComponent(job)}`, token));
      if (res.status === 200) return res.blob();
      if (res.status !== 202) throw new Error(await refusal(res));
      const state = await res.json();  // a render waits while the model runs a live session: its message says so
      if (state.message) this.say("Waiting…", "paused", `The video waits: ${state.message}`);
      else this.say("Making…", "rendering", "Making the video of this recording");
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}
