// @ts-check
/**
 * The interactive 3D view: one canvas, a volume, a rotation; drag to turn it.
 *
 * Owns the pointer and keyboard handling of one canvas (drag turns yaw and pitch, arrows
 * step, double-click or Home resets), coalescing redraws into one requestAnimationFrame,
 * and PNG export of what is shown. Drawing is volume.js's; which token's volume to show
 * is the caller's: call `setVolume` when the pinned or current token changes.
 *
 * After each draw the canvas carries data-frames (draws so far), data-yaw, data-pitch and
 * data-empty ("true" without a volume or with an all-zero one), for tests and styling.
 */

import { DEFAULT_ROTATION, checkVolume, renderVolume } from "../draw/volume.js";

/** @typedef {import("../draw/volume.js").VolumeData} VolumeData */
/** @typedef {import("../draw/volume.js").Rotation} Rotation */
/** @typedef {import("../draw/volume.js").RenderResult} RenderResult */

/** Radians of turn per CSS pixel dragged. */
export const DRAG_RADIANS_PER_PIXEL = 0.01;
/** Radians per arrow key press. */
export const KEY_STEP = 0.1;
/** Pitch stays within +-90 degrees: past it the view would turn upside down. */
export const MAX_PITCH = Math.PI / 2;

/** @param {number} pitch */
const clampPitch = (pitch) => Math.max(-MAX_PITCH, Math.min(MAX_PITCH, pitch));

export class VolumeView {
  /**
   * @param {HTMLCanvasElement} canvas sized by the caller (width/height attributes)
   * @param {{table?: Uint8ClampedArray, rotation?: Rotation}} [options]
   */
  constructor(canvas, options = {}) {
    this.canvas = canvas;
    this.ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    /** @type {VolumeData | null} */
    this.volume = null;
    /** @type {Uint8ClampedArray | undefined} */
    this.table = options.table;
    /** @type {Rotation} */
    this.rotation = { ...(options.rotation ?? DEFAULT_ROTATION) };
    /** @type {RenderResult | null} the last draw's labels and peak */
    this.last = null;
    this.frames = 0;
    this.pending = 0;
    /** @type {{id: number, x: number, y: number} | null} */
    this.drag = null;
    this.listeners = this.listen();
    if (canvas.tabIndex < 0) canvas.tabIndex = 0;
    canvas.style.touchAction = "none";
    canvas.style.cursor = "grab";
    if (!canvas.getAttribute("aria-label")) {
      canvas.setAttribute("aria-label", "3D estimate of where the token looked; drag or use the arrow keys to turn");
    }
    this.draw();
  }

  /** @returns {[string, (e: any) => void][]} */
  listen() {
    /** @type {[string, (e: any) => void][]} */
    const listeners = [
      ["pointerdown", (/** @type {PointerEvent} */ e) => this.onDown(e)],
      ["pointermove", (/** @type {PointerEvent} */ e) => this.onMove(e)],
      ["pointerup", (/** @type {PointerEvent} */ e) => this.onUp(e)],
      ["pointercancel", (/** @type {PointerEvent} */ e) => this.onUp(e)],
      ["dblclick", () => this.reset()],
      ["keydown", (/** @type {KeyboardEvent} */ e) => this.onKey(e)],
    ];
    for (const [type, fn] of listeners) this.canvas.addEventListener(type, fn);
    return listeners;
  }

  /** @param {PointerEvent} e */
  onDown(e) {
    if (e.button !== 0 || this.drag) return;
    this.drag = { id: e.pointerId, x: e.clientX, y: e.clientY };
    this.canvas.setPointerCapture?.(e.pointerId);
    this.canvas.style.cursor = "grabbing";
  }

  /** Dragging moves the near side of the body with the pointer. @param {PointerEvent} e */
  onMove(e) {
    if (!this.drag || e.pointerId !== this.drag.id) return;
    const dx = e.clientX - this.drag.x, dy = e.clientY - this.drag.y;
    this.drag.x = e.clientX;
    this.drag.y = e.clientY;
    this.turn(-dx * DRAG_RADIANS_PER_PIXEL, dy * DRAG_RADIANS_PER_PIXEL);
  }

  /** @param {PointerEvent} e */
  onUp(e) {
    if (!this.drag || e.pointerId !== this.drag.id) return;
    this.drag = null;
    this.canvas.releasePointerCapture?.(e.pointerId);
    this.canvas.style.cursor = "grab";
  }

  /** @param {KeyboardEvent} e */
  onKey(e) {
    /** @type {Record<string, [number, number]>} */
    const steps = { ArrowLeft: [KEY_STEP, 0], ArrowRight: [-KEY_STEP, 0], ArrowUp: [0, -KEY_STEP], ArrowDown: [0, KEY_STEP] };
    if (e.key === "Home") this.reset();
    else if (steps[e.key]) this.turn(...steps[e.key]);
    else return;
    e.preventDefault();
  }

  /** @param {number} dYaw @param {number} dPitch */
  turn(dYaw, dPitch) {
    this.setRotation({ yaw: this.rotation.yaw + dYaw, pitch: this.rotation.pitch + dPitch });
  }

  /** @param {Rotation} rotation pitch is clamped to +-pi/2 */
  setRotation(rotation) {
    this.rotation = { yaw: rotation.yaw, pitch: clampPitch(rotation.pitch) };
    this.schedule();
  }

  reset() {
    this.setRotation(DEFAULT_ROTATION);
  }

  /**
   * The token's volume, or null for none (the outline alone); a wrong length throws here,
   * not in the next frame.
   * @param {VolumeData | null} volume
   */
  setVolume(volume) {
    if (volume) checkVolume(volume);
    this.volume = volume;
    this.schedule();
  }

  /** @param {Uint8ClampedArray} table 256 x RGBA (palette.js) */
  setTable(table) {
    this.table = table;
    this.schedule();
  }

  /** Redraw on the next animation frame; many changes in one frame draw once. */
  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.draw();
    });
  }

  /** Draw now (also cancels a scheduled draw). @returns {RenderResult} */
  draw() {
    if (this.pending) {
      cancelAnimationFrame(this.pending);
      this.pending = 0;
    }
    this.last = renderVolume(this.ctx, this.volume, this.rotation, { table: this.table });
    this.frames += 1;
    const data = this.canvas.dataset;
    data.frames = String(this.frames);
    data.yaw = this.rotation.yaw.toFixed(4);
    data.pitch = this.rotation.pitch.toFixed(4);
    data.empty = String(this.last.peak === null);
    return this.last;
  }

  /** What is shown, as PNG bytes (a scheduled draw happens first). @returns {Promise<Blob>} */
  toBlob() {
    if (this.pending) this.draw();
    return new Promise((resolve, reject) => {
      this.canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the 3D view could not be encoded as PNG"))), "image/png");
    });
  }

  /** What is shown, as a data: URL of a PNG. @returns {string} */
  toPNG() {
    if (this.pending) this.draw();
    return this.canvas.toDataURL("image/png");
  }

  /** Remove the listeners and any scheduled draw; the canvas keeps its last picture. */
  destroy() {
    if (this.pending) cancelAnimationFrame(this.pending);
    this.pending = 0;
    for (const [type, fn] of this.listeners) this.canvas.removeEventListener(type, fn);
    this.listeners = [];
  }
}
