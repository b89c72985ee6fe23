// @ts-check
/**
 * Smooth transitions between heatmaps, on requestAnimationFrame.
 *
 * Owns the interpolation clock: a new target map starts a short ease from whatever is on
 * screen now, however fast or slow frames arrive; nothing here draws or touches the
 * network. Between transitions it sleeps (no rAF), so an idle page costs nothing.
 */

export class Animator {
  /**
   * @param {(values: Float32Array) => void} draw called with the interpolated map on each tick
   * @param {number} [durationMs] length of one transition
   */
  constructor(draw, durationMs = 220) {
    this.draw = draw;
    this.durationMs = durationMs;
    /** @type {Float32Array | null} */ this.from = null;
    /** @type {Float32Array | null} */ this.to = null;
    /** @type {Float32Array | null} */ this.current = null;
    this.startedAt = 0;
    this.frame = 0;
    this.tick = this.tick.bind(this);
  }

  /** True while a transition is running. */
  get busy() {
    return this.frame !== 0;
  }

  /**
   * Ease towards a new map; `immediate` jumps (seek, method change, reduced motion).
   * @param {Float32Array} values @param {boolean} [immediate]
   */
  setTarget(values, immediate = false) {
    const sameShape = this.current !== null && this.current.length === values.length;
    if (immediate || !sameShape) {
      this.cancel();
      this.from = this.to = this.current = values;
      this.draw(values);
      return;
    }
    this.from = /** @type {Float32Array} */ (this.current);
    this.to = values;
    this.startedAt = performance.now();
    if (this.frame === 0) this.frame = requestAnimationFrame(this.tick);
  }

  /** Redraw what is on screen now (settings changed, no new map). */
  redraw() {
    if (this.current) this.draw(this.current);
  }

  cancel() {
    if (this.frame !== 0) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  /** @param {number} now */
  tick(now) {
    const from = /** @type {Float32Array} */ (this.from);
    const to = /** @type {Float32Array} */ (this.to);
    const t = Math.min(1, Math.max(0, (now - this.startedAt) / this.durationMs));
    const e = t < 0.5 ? 2 * t * t : 1 - (-2 * t + 2) ** 2 / 2;
    const out = t >= 1 ? to : new Float32Array(to.length);
    if (t < 1) for (let k = 0; k < to.length; k++) out[k] = from[k] + (to[k] - from[k]) * e;
    this.current = out;
    this.frame = t < 1 ? requestAnimationFrame(this.tick) : 0;
    this.draw(out);
  }
}
