// @ts-check
/**
 * The one state object of the page, and a way to be told when it changes.
 *
 * Owns the shape of what the page knows: the session (its start frame, steps by index,
 * end, analysis jobs by id), what is shown (cursor, pinned token, selected image) and the
 * viewing settings. Modules read it
 * freely and change it only through `set`, which notifies the subscribers once per call.
 */

/**
 * @typedef {import("./wire/protocol.js").StartFrame} StartFrame
 * @typedef {import("./wire/protocol.js").StepFrame} StepFrame
 * @typedef {import("./wire/protocol.js").EndFrame} EndFrame
 * @typedef {import("./wire/analysis-protocol.js").AnalysisFrame} AnalysisFrame
 * @typedef {{method: string, palette: string, contrast: string, opacity: number, window: number,
 *   level: number, invert: boolean, regions: boolean, trail: boolean, fade: boolean, context: boolean,
 *   image: number}} View  context: the pinned token's links to the words it read
 * @typedef {{name: string, bytes: Uint8Array, label: string}} ChosenFile
 * @typedef {{recording: string, steps: number, speed: number, paused: boolean, at: number}} ReplayInfo
 * @typedef {{
 *   mode: "idle" | "live" | "watch" | "replay",
 *   phase: "idle" | "connecting" | "queued" | "running" | "ended" | "closed",
 *   queuePosition: number | null,
 *   start: StartFrame | null,
 *   steps: StepFrame[],
 *   end: EndFrame | null,
 *   error: {code: string, message: string} | null,
 *   cursor: number,
 *   pinned: number | null,
 *   replay: ReplayInfo | null,
 *   view: View,
 *   files: ChosenFile[],
 *   jobs: Record<string, AnalysisFrame>,
 *   token: string | null,
 *   health: Record<string, unknown> | null,
 *   present: boolean,
 * }} State  present: presentation mode (the X-rays and the report, large, nothing else)
 */

/** @type {View} */
export const DEFAULT_VIEW = {
  method: "consensus", palette: "viridis", contrast: "linear", opacity: 0.55,
  window: 255, level: 128, invert: false, regions: true, trail: true, fade: false, context: true, image: 0,
};

/** @returns {State} */
export function initialState() {
  return {
    mode: "idle", phase: "idle", queuePosition: null, start: null, steps: [], end: null, error: null,
    cursor: -1, pinned: null, replay: null, view: { ...DEFAULT_VIEW }, files: [], jobs: {}, token: null, health: null,
    present: false,
  };
}

/** @typedef {(state: State, changed: Set<string>) => void} Listener */

export class Store {
  constructor() {
    /** @type {State} */ this.state = initialState();
    /** @type {Listener[]} */ this.listeners = [];
  }

  /** @param {Listener} fn */
  subscribe(fn) {
    this.listeners.push(fn);
  }

  /**
   * Merge a patch (view is merged one level deeper) and notify once.
   * @param {Partial<Omit<State, "view">> & {view?: Partial<View>}} patch
   */
  set(patch) {
    const changed = new Set(Object.keys(patch));
    const { view, ...rest } = patch;
    Object.assign(this.state, rest);
    if (view) {
      this.state.view = { ...this.state.view, ...view };
      for (const key of Object.keys(view)) changed.add(`view.${key}`);
    }
    for (const fn of this.listeners) fn(this.state, changed);
  }

  /** A fresh session: forget every frame and analysis job, keep settings, files, token, health and presentation mode. */
  resetSession() {
    const { view, files, token, health, present } = this.state;
    this.state = { ...initialState(), view: { ...view, image: 0 }, files, token, health, present };
  }
}

/**
 * The step index on screen: the pinned token, else the cursor.
 * @param {State} s @returns {number}
 */
export function shownIndex(s) {
  return s.pinned ?? s.cursor;
}

/**
 * The step on screen, or null.
 * @param {State} s @returns {StepFrame | null}
 */
export function shownStep(s) {
  const i = shownIndex(s);
  return i >= 0 ? s.steps[i] ?? null : null;
}
