// @ts-check
/** placeholder */
/** @param {string | null} token */
export async function showCompare(token) {}
/** @param {string | null} token */
export function bindCompare(token) {}
