// @ts-check
/**
 * The player's "Offline player" link: downloads the shown recording as one HTML file that plays it
 * with no server (GET /api/recordings/{id}/player.html, server/teaching/offline_routes.py; `medviz html`
 * writes the same file).
 *
 * Owns the link's address and when it shows (a replay of a server recording; never inside an offline
 * player, whose replay has no recording id). Does not own building the file (the server).
 */

/** @param {string} recording @returns {string} the route's path */
export const playerPath = (recording) => `/api/recordings/${encodeURIComponent(recording)}/player.html`;

/**
 * @param {HTMLAnchorElement} link @param {string} recording the replay's recording id, "" for none
 * @param {(path: string) => string} url the path as an address carrying the page's token
 */
export function renderOfflineButton(link, recording, url) {
  link.hidden = recording === "";
  if (recording === "" || link.dataset.recording === recording) return;
  link.dataset.recording = recording;
  link.href = url(playerPath(recording));
  link.download = `${recording}.html`;
}
