// @ts-check
/**
 * Replay transport: play/pause, speed 0.25x–8x and a seek bar over tokens.
 *
 * Owns these controls and their keyboard/mouse events; it sends nothing itself but calls
 * the handlers app.js gives it (which talk to the replay socket). Frames from a replay go
 * through exactly the same rendering path as a live session.
 */

import { VideoButton } from "./video-button.js";

export const SPEEDS = [0.25, 0.5, 1, 2, 4, 8];

/**
 * @typedef {{playPause: () => void, speed: (value: number) => void, seek: (index: number) => void}} PlayerHandlers
 */

export class Player {
  /** @param {HTMLElement} root @param {PlayerHandlers} on */
  constructor(root, on) {
    this.root = root;
    this.play = /** @type {HTMLButtonElement} */ (root.querySelector("#play"));
    this.speedSel = /** @type {HTMLSelectElement} */ (root.querySelector("#speed"));
    this.seekBar = /** @type {HTMLInputElement} */ (root.querySelector("#seek"));
    this.label = /** @type {HTMLElement} */ (root.querySelector("#seek-label"));
    this.dragging = false;
    this.video = new VideoButton(root);  // the recording as an MP4 for slides (video-button.js)
    this.speedSel.replaceChildren(...SPEEDS.map((s) => new Option(`${s}×`, String(s), s === 1, s === 1)));
    this.play.addEventListener("click", () => on.playPause());
    this.speedSel.addEventListener("change", () => on.speed(Number(this.speedSel.value)));
    this.seekBar.addEventListener("input", () => {
      this.dragging = true;
      this.label.textContent = this.text(Number(this.seekBar.value), Number(this.seekBar.max) + 1);
    });
    this.seekBar.addEventListener("change", () => {
      this.dragging = false;
      on.seek(Number(this.seekBar.value));
    });
  }

  /** @param {number} i @param {number} total */
  text(i, total) {
    return `token ${Math.max(0, i) + 1} / ${total}`;
  }

  /**
   * @param {import("../state.js").ReplayInfo | null} replay @param {number} cursor
   * @param {boolean} ended
   */
  render(replay, cursor, ended) {
    this.root.hidden = replay === null;
    this.video.render(replay);
    if (!replay) return;
    const total = Math.max(1, replay.steps);
    this.seekBar.max = String(total - 1);
    if (!this.dragging) {
      this.seekBar.value = String(Math.max(0, cursor));
      this.label.textContent = this.text(cursor, total);
    }
    const playing = !replay.paused && !ended;
    this.play.textContent = playing ? "❚❚ Pause" : ended ? "↺ Replay" : "▶ Play";
    this.play.setAttribute("aria-label", playing ? "Pause" : "Play");
    this.play.dataset.playing = String(playing);
    if (document.activeElement !== this.speedSel) this.speedSel.value = String(replay.speed);
  }
}
