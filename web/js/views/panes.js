// @ts-check
/**
 * The X-rays side by side: one pane per image of the session, each with its own stage
 * canvas, heatmap animation, label and share of attention.
 *
 * Owns creating and removing panes as the number of images changes, and bringing each
 * pane's picture up to date from a `PaneView` (what to show), animating between maps with
 * one Animator per pane, and laying the panes out so that their images fill them by
 * aspect (`paneGrid`: one row, or a grid of two columns for four views). The first pane's canvas keeps the id `stage`. Drawing is
 * stage.js's; deciding what each pane shows is render.js's.
 */

import { Animator } from "../draw/animator.js";
import { Stage } from "./stage.js";

/**
 * @typedef {{key: string, values: Float32Array | null, jump: boolean, step: number, method: string,
 *   scene: Omit<import("./stage.js").Scene, "values">, title: string, share: string, colour: string,
 *   selected: boolean}} PaneView
 */

class Pane {
  /** @param {HTMLElement} root @param {number} k */
  constructor(root, k) {
    this.root = root;
    this.head = /** @type {HTMLElement} */ (root.querySelector(".pane-head"));
    const canvas = /** @type {HTMLCanvasElement} */ (root.querySelector("canvas"));
    this.stage = new Stage(canvas, /** @type {HTMLElement} */ (root.querySelector(".pane-body")));
    this.key = "";
    /** @type {Omit<import("./stage.js").Scene, "values"> | null} */ this.scene = null;
    this.hasValues = false;
    this.animator = new Animator((values) => this.paint(values));
    root.dataset.image = String(k);
  }

  /** @param {Float32Array} values */
  paint(values) {
    if (!this.scene) return;
    this.stage.draw({ ...this.scene, values: this.hasValues ? values : null });
    this.stage.canvas.dataset.animating = String(this.animator.busy);
  }

  /** @param {PaneView} v */
  show(v) {
    this.scene = v.scene;
    this.root.classList.toggle("selected", v.selected);
    this.head.replaceChildren(...headParts(v));
    const canvas = this.stage.canvas;
    if (v.key !== this.key) {
      this.key = v.key;
      canvas.dataset.step = String(v.values ? v.step : -1);
      canvas.dataset.method = v.method;
      this.hasValues = v.values !== null;
      if (v.values) this.animator.setTarget(v.values, v.jump);
      else this.paint(new Float32Array(0));
    } else if (!this.animator.busy) this.animator.redraw();
    if (!this.animator.current) this.paint(new Float32Array(0));
  }
}

/** @param {PaneView} v @returns {Node[]} */
function headParts(v) {
  const dot = document.createElement("span");
  dot.className = "pane-dot";
  dot.style.background = v.colour;
  const title = document.createElement("span");
  title.className = "pane-title";
  title.textContent = v.title;
  const share = document.createElement("span");
  share.className = "pane-share";
  share.textContent = v.share;
  return [dot, title, share];
}

const GAP = 6;  // px between panes (.panes gap)
const HEAD = 24;  // px of a pane's title row in a study

/**
 * How n images of the given aspects (width / height) fill a w x h box: the number of
 * columns whose layout shows the most image area (each image as large as its cell allows,
 * aspect kept); in one row, each column as wide as its image's aspect asks, so every
 * image can take the full height.
 * @param {number[]} aspects @param {number} w @param {number} h
 * @returns {{columns: string, rows: number}} CSS grid-template-columns and the row count
 */
export function paneGrid(aspects, w, h) {
  const n = aspects.length;
  const head = n > 1 ? HEAD : 0;
  let best = { columns: "minmax(0, 1fr)", rows: 1, area: -1 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const cellH = Math.max(1, (h - GAP * (rows - 1)) / rows - head);
    let area = 0;
    let columns;
    if (rows === 1) {  // widths in proportion to the aspects; scaled down together when they overflow
      const room = w - GAP * (n - 1);
      const want = aspects.reduce((a, b) => a + b, 0) * cellH;
      const k = Math.min(1, room / want);
      area = aspects.reduce((sum, a) => sum + (a * cellH * k) * (cellH * k), 0);
      columns = aspects.map((a) => `minmax(0, ${a.toFixed(3)}fr)`).join(" ");
    } else {
      const cellW = Math.max(1, (w - GAP * (cols - 1)) / cols);
      area = aspects.reduce((sum, a) => {
        const dw = Math.min(cellW, cellH * a);
        return sum + dw * (dw / a);
      }, 0);
      columns = `repeat(${cols}, minmax(0, 1fr))`;
    }
    if (area > best.area + 1) best = { columns, rows, area };
  }
  return { columns: best.columns, rows: best.rows };
}

export class Panes {
  /** @param {HTMLElement} box holds the panes; its first `.pane` (with canvas#stage) is in the page */
  constructor(box) {
    this.box = box;
    const first = /** @type {HTMLElement} */ (box.querySelector(".pane"));
    this.template = /** @type {HTMLElement} */ (first.cloneNode(true));
    /** @type {Pane[]} */ this.panes = [new Pane(first, 0)];
    /** @type {number[]} */ this.aspects = [1];
    new ResizeObserver(() => this.layout()).observe(box);
  }

  /** Lay the panes out by their images' aspects (paneGrid) in the box's current size. */
  layout() {
    const w = this.box.clientWidth;
    const h = this.box.clientHeight;
    if (w < 1 || h < 1) return;
    const { columns, rows } = paneGrid(this.aspects, w, h);
    const key = `${columns}|${rows}`;
    if (this.box.dataset.layout === key) return;
    this.box.dataset.layout = key;
    Object.assign(this.box.style, {
      gridAutoFlow: "row", gridTemplateColumns: columns, gridTemplateRows: `repeat(${rows}, minmax(0, 1fr))`,
    });
  }

  /** @param {number} n at least one pane */
  resize(n) {
    const want = Math.max(1, n);
    while (this.panes.length < want) {
      const el = /** @type {HTMLElement} */ (this.template.cloneNode(true));
      const canvas = /** @type {HTMLCanvasElement} */ (el.querySelector("canvas"));
      canvas.id = `stage-${this.panes.length}`;
      canvas.setAttribute("aria-label", `Image ${this.panes.length + 1} with attention heatmap`);
      this.box.append(el);
      this.panes.push(new Pane(el, this.panes.length));
    }
    while (this.panes.length > want) {
      const pane = /** @type {Pane} */ (this.panes.pop());
      pane.animator.cancel();
      pane.root.remove();
    }
    this.box.dataset.count = String(want);
  }

  /** @param {PaneView[]} views one per pane */
  show(views) {
    this.resize(views.length);
    const aspects = views.map((v) => (v.scene.xray ? v.scene.xray.width / v.scene.xray.height : 1));
    if (aspects.join() !== this.aspects.join()) {
      this.aspects = aspects;
      this.layout();
    }
    views.forEach((v, k) => this.panes[k].show(v));
  }

  /** @returns {HTMLCanvasElement | null} every pane's full-resolution picture side by side */
  snapshot() {
    const shots = this.panes.map((p) => p.stage.snapshot()).filter((c) => c !== null);
    if (shots.length <= 1) return shots[0] ?? null;
    const h = Math.max(...shots.map((c) => c.height));
    const widths = shots.map((c) => Math.round((c.width * h) / c.height));
    const out = document.createElement("canvas");
    out.width = widths.reduce((a, b) => a + b, 0) + 8 * (shots.length - 1);
    out.height = h;
    const ctx = /** @type {CanvasRenderingContext2D} */ (out.getContext("2d"));
    ctx.fillStyle = "#05070a";
    ctx.fillRect(0, 0, out.width, out.height);
    let x = 0;
    shots.forEach((c, k) => {
      ctx.drawImage(c, x, 0, widths[k], h);
      x += widths[k] + 8;
    });
    return out;
  }

  /** @returns {boolean} whether any pane is mid-transition */
  get busy() {
    return this.panes.some((p) => p.animator.busy);
  }
}
