// @ts-check
/** placeholder */
/** @param {string} tab @param {any} s @param {any} step @param {number} image */
export function renderAnalysisTab(tab, s, step, image) {}
export function bindAnalysisViews() {}
