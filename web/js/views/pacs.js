// @ts-check
/**
 * The "PACS" source beside the file drop: search the server's PACS, pick a study, see its series
 * with thumbnails and view labels, tick one to four views and start a session on them.
 *
 * Owns the PACS card (shown only when GET /api/pacs says one is configured): the search form,
 * the paged results table, the chosen study's series, the chosen views and the one-line error.
 * The server talks to the PACS (server/pacs_routes.py); the page never sees its credentials.
 * Starting the session is the caller's (`start`: controller.startFromPacs).
 */

import { apiUrl } from "../page.js";

const MAX_VIEWS = 4;

/**
 * @typedef {{study_uid: string, patient_id: string, patient_name: string, accession: string, study_date: string,
 *   study_description: string, modalities: string[], series_count: number | null, instance_count: number | null}} Study
 * @typedef {{uid: string, number: number | null, label: string, usable: boolean, why: string, default: boolean}} Instance
 * @typedef {{series_uid: string, modality: string, series_number: number | null, description: string,
 *   instances: Instance[]}} Series
 * @typedef {{token: () => string | null, start: (pick: import("../wire/protocol.js").PacsPick) => void}} PacsHooks
 */

const el = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** The one JSON error line the server sends, or a plain one. @param {Response} res */
async function errorOf(res) {
  try {
    const body = await res.json();
    if (typeof body?.error?.message === "string") return body.error.message;
  } catch { /* not JSON */ }
  return `the server answered ${res.status}`;
}

/** @param {string} path @param {string | null} token */
async function getJson(path, token) {
  const res = await fetch(apiUrl(path, token));
  if (!res.ok) throw new Error(await errorOf(res));
  return res.json();
}

/**
 * The PACS, or null when none is configured or this page may not use it (opened from a share or watch link: only
 * the operator's link carries the PACS key, which the server keeps in a cookie of its own).
 * @param {string | null} token @returns {Promise<{host: string} | null>}
 */
export async function pacsInfo(token) {
  const res = await fetch(apiUrl("/api/pacs", token));
  if (!res.ok) return null;
  const body = await res.json();
  return body?.configured === true && body.allowed === true && typeof body.host === "string" ? { host: body.host } : null;
}

/** A DICOM date (YYYYMMDD) as people read it. @param {string} d */
export function dicomDate(d) {
  return /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : d;
}

/** A DICOM person name (Family^Given) as people read it. @param {string} n */
export function personName(n) {
  return n.split("^").filter(Boolean).join(" ");
}

/** A cell of two lines (the second muted). @param {string} first @param {string} second */
function cell(first, second) {
  const td = document.createElement("td");
  const top = Object.assign(document.createElement("span"), { textContent: first });
  const below = Object.assign(document.createElement("span"), { className: "muted", textContent: second });
  td.append(top, below);
  return td;
}

export class PacsBrowser {
  /** @param {PacsHooks} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    this.offset = 0;
    /** @type {string} the last search's query string (without offset) */
    this.query = "";
    /** @type {string | null} */
    this.study = null;
    /** @type {Series[]} */
    this.series = [];
    /** @type {string[]} chosen SOP instance UIDs, in the order they were ticked */
    this.chosen = [];
  }

  /** Show the card and wire its controls. @param {string} host */
  bind(host) {
    el("pacs").hidden = false;
    el("pacs-host").textContent = host;
    el("pacs-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.offset = 0;
      this.query = this.formQuery();
      void this.search();
    });
    el("pacs-prev").addEventListener("click", () => { this.offset = Math.max(0, this.offset - this.pageSize); void this.search(); });
    el("pacs-next").addEventListener("click", () => { this.offset += this.pageSize; void this.search(); });
    el("pacs-start").addEventListener("click", () => this.startChosen());
  }

  get pageSize() {
    return Number(el("pacs-results").dataset.pageSize || "25");
  }

  formQuery() {
    const form = /** @type {HTMLFormElement} */ (el("pacs-form"));
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (typeof v === "string" && v.trim()) params.set(k, v.trim());
    return params.toString();
  }

  /** @param {string} text */
  say(text) {
    el("pacs-error").textContent = text;
    el("pacs-error").hidden = text === "";
  }

  async search() {
    this.say("");
    el("pacs-status").textContent = "Searching…";
    try {
      const q = `${this.query}${this.query ? "&" : ""}offset=${this.offset}`;
      const body = await getJson(`/api/pacs/studies?${q}`, this.hooks.token());
      el("pacs-results").dataset.pageSize = String(body.page_size ?? 25);
      this.renderStudies(/** @type {Study[]} */ (body.studies ?? []), Boolean(body.more), Boolean(body.capped));
    } catch (e) {
      el("pacs-status").textContent = "";
      this.say(/** @type {Error} */ (e).message);
    }
  }

  /** @param {Study[]} studies @param {boolean} more @param {boolean} capped: the search shows no more than these */
  renderStudies(studies, more, capped) {
    const body = /** @type {HTMLTableSectionElement} */ (el("pacs-rows"));
    body.replaceChildren(...studies.map((st) => {
      const tr = document.createElement("tr");
      tr.tabIndex = 0;
      tr.dataset.study = st.study_uid;
      tr.setAttribute("aria-label", `Open the study of ${dicomDate(st.study_date)}, patient ${st.patient_id}, accession ${st.accession}`);
      const images = st.instance_count === null ? "" : `${st.instance_count} image${st.instance_count === 1 ? "" : "s"}`;
      tr.append(cell(dicomDate(st.study_date), st.modalities.join(", ")), cell(st.patient_id, personName(st.patient_name)),
        cell(st.accession, images));
      tr.title = st.study_description;
      const open = () => void this.openStudy(st.study_uid, tr);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); open(); } });
      return tr;
    }));
    el("pacs-results").hidden = studies.length === 0;
    const first = studies.length ? this.offset + 1 : 0;
    const end = this.offset + studies.length;
    const rest = capped ? ` (a search shows at most ${end}: narrow it)` : more ? "" : " (all)";
    el("pacs-status").textContent = studies.length ? `Studies ${first}–${end}${rest}` : "No study matches.";
    /** @type {HTMLButtonElement} */ (el("pacs-prev")).disabled = this.offset === 0;
    /** @type {HTMLButtonElement} */ (el("pacs-next")).disabled = !more;
    el("pacs-pages").hidden = !more && this.offset === 0;
  }

  /** @param {string} study @param {HTMLElement} row */
  async openStudy(study, row) {
    this.say("");
    for (const r of el("pacs-rows").querySelectorAll("tr")) r.setAttribute("aria-selected", String(r === row));
    el("pacs-series").replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: "Reading its series…" }));
    try {
      const body = await getJson(`/api/pacs/studies/${encodeURIComponent(study)}/series`, this.hooks.token());
      this.study = study;
      this.series = /** @type {Series[]} */ (body.series ?? []);
      this.chosen = this.series.flatMap((s) => s.instances.filter((i) => i.default).map((i) => i.uid)).slice(0, MAX_VIEWS);
      this.renderSeries();
      if (body.why) this.say(body.why);
    } catch (e) {
      el("pacs-series").replaceChildren();
      this.say(/** @type {Error} */ (e).message);
    }
  }

  renderSeries() {
    const token = this.hooks.token();
    const study = this.study ?? "";
    el("pacs-series").replaceChildren(...this.series.map((s) => {
      const box = document.createElement("fieldset");
      box.className = "pacs-one-series";
      const legend = document.createElement("legend");
      legend.textContent = [s.modality, s.series_number === null ? "" : `#${s.series_number}`, s.description].filter(Boolean).join(" · ");
      box.append(legend, ...s.instances.map((i) => this.instanceTile(study, s.series_uid, i, token)));
      return box;
    }));
    this.renderChoice();
  }

  /** @param {string} study @param {string} series @param {Instance} i @param {string | null} token */
  instanceTile(study, series, i, token) {
    const label = document.createElement("label");
    label.className = "pacs-view";
    label.title = i.usable ? `${i.label}` : i.why;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = i.uid;
    box.disabled = !i.usable;
    box.checked = this.chosen.includes(i.uid);
    box.setAttribute("aria-label", i.usable ? `Use view ${i.label}` : `Not usable: ${i.why}`);
    box.addEventListener("change", () => {
      this.chosen = box.checked ? [...this.chosen, i.uid] : this.chosen.filter((u) => u !== i.uid);
      this.renderChoice();
    });
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = i.usable ? `Thumbnail of ${i.label}` : "No thumbnail (not an image medviz reads)";
    img.width = 80;
    img.height = 80;
    if (i.usable) img.src = apiUrl(`/api/pacs/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}/instances/${encodeURIComponent(i.uid)}/thumbnail`, token);
    const words = document.createElement("span");
    words.textContent = i.usable ? i.label : `not usable: ${i.why}`;
    label.append(box, img, words);
    return label;
  }

  renderChoice() {
    const n = this.chosen.length;
    const button = /** @type {HTMLButtonElement} */ (el("pacs-start"));
    button.disabled = n < 1 || n > MAX_VIEWS;
    button.textContent = n > MAX_VIEWS ? `Choose at most ${MAX_VIEWS} views` : `Start on ${n} view${n === 1 ? "" : "s"}`;
    for (const box of el("pacs-series").querySelectorAll("input[type=checkbox]")) {
      const b = /** @type {HTMLInputElement} */ (box);
      b.checked = this.chosen.includes(b.value);
    }
  }

  startChosen() {
    if (!this.study || this.chosen.length < 1 || this.chosen.length > MAX_VIEWS) return;
    const series = this.series.filter((s) => s.instances.some((i) => this.chosen.includes(i.uid)));
    this.hooks.start({ study: this.study, series: series.length === 1 ? series[0].series_uid : null, instances: [...this.chosen] });
  }
}
