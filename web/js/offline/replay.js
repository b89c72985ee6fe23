// @ts-check
/**
 * An in-page replay: the offline player's recorded frames played as server/sockets/replay.py plays
 * them over /ws/replay, with the same controls (pause, resume, seek, speed) and the same frames to
 * the controller's handlers (a `replay` status after every command, the start, each step when its
 * recorded `t_ms` is due at 0.25x-8x, the recorded results of a token after its step, the end).
 *
 * Owns the timing (`ReplayClock`, sockets/replay.py's clock in JS) and the order of the frames; the
 * timer is given, so tests drive it without waiting. Does not own reading the embedded recording
 * (boot.js) nor what the frames do to the page (controller.js).
 */

/**
 * @typedef {import("../wire/protocol.js").Frame} Frame
 * @typedef {import("../wire/protocol.js").StartFrame} StartFrame
 * @typedef {import("../wire/protocol.js").StepFrame} StepFrame
 * @typedef {import("../wire/analysis-protocol.js").AnalysisFrame} AnalysisFrame
 * @typedef {{start: StartFrame, steps: StepFrame[], results: Map<number, AnalysisFrame[]>, end: Frame | null}} Recorded
 * @typedef {{now: () => number, after: (ms: number, fn: () => void) => number, cancel: (id: number) => void}} Timer
 *   now in ms
 */

export const MIN_SPEED = 0.25;
export const MAX_SPEED = 8;

/** @type {Timer} */
export const WINDOW_TIMER = {
  now: () => performance.now(),
  after: (ms, fn) => window.setTimeout(fn, ms),
  cancel: (id) => window.clearTimeout(id),
};

/**
 * The frames of a replay in the order they were embedded (start, steps each followed by its results, end).
 * @param {Frame[]} frames @returns {Recorded}
 */
export function recorded(frames) {
  const [start, ...rest] = frames;
  if (start?.type !== "start") throw new Error(`a recording begins with its start frame; this one begins with ${start?.type ?? "nothing"}`);
  /** @type {StepFrame[]} */ const steps = [];
  /** @type {Map<number, AnalysisFrame[]>} */ const results = new Map();
  /** @type {Frame | null} */ let end = null;
  for (const f of rest) {
    if (f.type === "step") steps.push(f);
    else if (f.type === "analysis") results.set(steps.length - 1, [...(results.get(steps.length - 1) ?? []), f]);
    else if (f.type === "end") end = f;
  }
  return { start, steps, results, end };
}

/** Recorded time runs at `speed` x wall time while playing; the next step is due when the cursor reaches its t_ms. */
export class ReplayClock {
  /** @param {number[]} tMs @param {number} speed @param {number} now wall ms */
  constructor(tMs, speed, now) {
    this.tMs = tMs;
    this.speed = speed;
    this.paused = false;
    this.at = 0;  // the next step to send
    this.base = now;  // the wall time at which the cursor was `cursorMs`
    this.cursorMs = 0;  // recorded ms
  }

  /** @param {number} now */
  cursor(now) {
    return this.paused ? this.cursorMs : this.cursorMs + (now - this.base) * this.speed;
  }

  /** Wall ms until the next step is due (0: now); null when paused or past the last step. @param {number} now */
  delay(now) {
    if (this.paused || this.at >= this.tMs.length) return null;
    return Math.max(0, (this.tMs[this.at] - this.cursor(now)) / this.speed);
  }

  /** @param {number} now */
  pause(now) {
    [this.cursorMs, this.base, this.paused] = [this.cursor(now), now, true];
  }

  /** @param {number} now */
  resume(now) {
    [this.base, this.paused] = [now, false];
  }

  /** @param {number} index 0..steps (steps: past the last) @param {number} now */
  seek(index, now) {
    this.at = Math.max(0, Math.min(this.tMs.length, Math.round(index)));
    this.cursorMs = this.at < this.tMs.length ? this.tMs[this.at] : this.cursor(now);
    this.base = now;
  }

  /** @param {number} value @param {number} now */
  setSpeed(value, now) {
    [this.cursorMs, this.base, this.speed] = [this.cursor(now), now, Math.max(MIN_SPEED, Math.min(MAX_SPEED, value))];
  }
}

/** One replay of embedded frames, driven by a timer, answering the controls a replay socket takes. */
export class InPageReplay {
  /**
   * @param {Recorded} rec @param {string} name the recording's name @param {(f: Frame) => void} send
   * @param {{speed?: number, paused?: boolean, timer?: Timer}} [options]
   */
  constructor(rec, name, send, { speed = 1, paused = false, timer = WINDOW_TIMER } = {}) {
    this.rec = rec;
    this.name = name;
    this.send = send;
    this.timer = timer;
    this.clock = new ReplayClock(rec.steps.map((s) => s.tMs), 1, timer.now());
    this.clock.setSpeed(speed, timer.now());
    if (paused) this.clock.pause(timer.now());
    this.ended = false;
    this.closed = false;
    /** @type {number | null} */ this.pending = null;
  }

  /** The status, the start, then the steps as they fall due (on the timer, as a socket's frames arrive). */
  begin() {
    this.later(0, () => {
      this.status();
      this.send(this.rec.start);
      this.play();
    });
  }

  pause() {
    this.command(() => this.clock.pause(this.timer.now()));
  }

  resume() {
    this.command(() => this.clock.resume(this.timer.now()));
  }

  /** @param {number} index */
  seek(index) {
    this.command(() => {
      this.clock.seek(index, this.timer.now());
      this.ended = false;  // the end is sent again when the steps reach it
    });
  }

  /** @param {number} value */
  speed(value) {
    this.command(() => this.clock.setSpeed(value, this.timer.now()));
  }

  close() {
    this.closed = true;
    if (this.pending !== null) this.timer.cancel(this.pending);
    this.pending = null;
  }

  /** @param {() => void} change */
  command(change) {
    if (this.closed) return;
    change();
    this.status();
    this.play();
  }

  status() {
    const c = this.clock;
    this.send({ type: "replay", recording: this.name, steps: this.rec.steps.length, speed: c.speed, paused: c.paused, at: c.at });
  }

  /** Send what is due now and wait for the next step, or send the end once past the last. */
  play() {
    if (this.pending !== null) this.timer.cancel(this.pending);
    this.pending = null;
    const delay = this.clock.delay(this.timer.now());
    if (delay === null) {
      if (!this.ended && this.clock.at >= this.rec.steps.length) {
        this.ended = true;
        if (this.rec.end) this.send(this.rec.end);
      }
      return;
    }
    this.later(delay, () => {
      const at = this.clock.at;
      this.send(this.rec.steps[at]);
      for (const result of this.rec.results.get(at) ?? []) this.send(result);
      this.clock.at += 1;
      this.play();
    });
  }

  /** @param {number} ms @param {() => void} fn */
  later(ms, fn) {
    if (this.closed) return;
    this.pending = this.timer.after(ms, () => {
      this.pending = null;
      if (!this.closed) fn();
    });
  }
}
