// @ts-check
/**
 * Annotation boxes from a `labels.csv` like the one beside the sample X-rays
 * (../shared/data/cxr/): one row per file with `file`, `width`, `height` and `boxes`, a
 * JSON list of `{label, kind, xywh}` in pixel coordinates of the stored file.
 *
 * Owns parsing that CSV (quoted fields, doubled quotes) and picking the rows that belong
 * to an image: the same file name when it is known, else the same pixel size.
 */

/**
 * @typedef {{file: string, width: number, height: number, boxes: {label: string, xywh: [number, number, number, number]}[]}} LabelRow
 */

/**
 * RFC 4180 rows: fields split on commas outside quotes, "" inside quotes is one quote.
 * @param {string} text @returns {string[][]}
 */
export function parseCsv(text) {
  /** @type {string[][]} */
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let k = 0; k < text.length; k++) {
    const ch = text[k];
    if (quoted) {
      if (ch === '"' && text[k + 1] === '"') { cell += '"'; k++; } else if (ch === '"') quoted = false; else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { row.push(cell); cell = ""; }
    else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[k + 1] === "\n") k++;
      row.push(cell);
      if (row.some((c) => c !== "")) rows.push(row);
      row = [];
      cell = "";
    } else cell += ch;
  }
  row.push(cell);
  if (row.some((c) => c !== "")) rows.push(row);
  return rows;
}

/**
 * The rows with at least one box.
 * @param {string} text @returns {LabelRow[]}
 */
export function labelRows(text) {
  const [head, ...rows] = parseCsv(text);
  if (!head) return [];
  const col = (/** @type {string} */ name) => head.indexOf(name);
  const [file, width, height, boxes] = [col("file"), col("width"), col("height"), col("boxes")];
  if (file < 0 || boxes < 0) throw new Error("a labels.csv needs 'file' and 'boxes' columns");
  /** @type {LabelRow[]} */
  const out = [];
  for (const r of rows) {
    let parsed;
    try {
      parsed = JSON.parse(r[boxes] || "[]");
    } catch {
      continue;
    }
    if (!Array.isArray(parsed) || parsed.length === 0) continue;
    const good = parsed.filter((b) => b && Array.isArray(b.xywh) && b.xywh.length === 4 && b.xywh.every(Number.isFinite));
    out.push({
      file: r[file], width: Number(r[width]), height: Number(r[height]),
      boxes: good.map((b) => ({ label: String(b.label ?? "box"), xywh: /** @type {[number, number, number, number]} */ (b.xywh.map(Number)) })),
    });
  }
  return out;
}

/**
 * The rows for an image: its file name when known and listed, else rows of its size.
 * @param {LabelRow[]} rows @param {string | null} name @param {number} width @param {number} height
 */
export function rowsFor(rows, name, width, height) {
  const named = name ? rows.filter((r) => r.file === name) : [];
  return named.length ? named : rows.filter((r) => r.width === width && r.height === height);
}
