// @ts-check
/**
 * Websocket clients for the three server routes: start (or rejoin) a session, watch one, replay one.
 *
 * Owns connections: URLs (with the access token when the page has one), binary frames
 * in and out, close codes turned into plain words, and the owner key of this tab's live
 * session (sessionStorage: it survives a reload of this tab only, and is never put in a
 * URL). It decodes with protocol.js and hands frames to a callback; it never touches the
 * state or the DOM.
 */

import { NO_PACS_KEY } from "./format.js";
import { decodeFrame, encodeCommand, encodeRejoin, encodeSeek, encodeSpeed, encodeStart } from "./wire/protocol.js";

/**
 * @typedef {{frame: (f: import("./wire/protocol.js").Frame) => void,
 *   closed: (why: string, clean: boolean, code: number) => void,
 *   problem: (message: string) => void}} Handlers
 */

/** Close codes the user may meet, in plain words. */
const CLOSE_WORDS = /** @type {Record<number, string>} */ ({
  1001: "The server is shutting down.",
  1006: "The connection to the server was lost.",
  1008: "The server refused the connection (access token or origin not accepted).",
  1009: "The message was too large for the server.",
  1011: "The server hit an internal problem.",
  1013: "The server is busy; try again shortly.",
  4001: "The server needs a valid access token (open the link with ?token=…).",
  4003: "The server refused this page's origin.",
  4008: "This viewer fell too far behind the live session; rejoining catches up.",
  4408: "The connection sat idle and the server closed it.",
  4429: "The server has too many connections open; try again shortly.",
});

/**
 * @param {number} code @param {string} reason
 * @returns {string} a sentence for the user
 */
export function closeWords(code, reason) {
  if (reason === NO_PACS_KEY) return reason;  // a PACS start without the PACS key: not a token problem
  const base = CLOSE_WORDS[code] ?? `The connection closed (code ${code}).`;
  return reason ? `${base} ${reason}` : base;
}

/**
 * The websocket URL of a server path, carrying the page's token.
 * @param {string} path @param {string | null} token
 */
export function socketUrl(path, token) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(`${scheme}//${location.host}${path}`);
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

const OWNER = "medviz.owner";

/**
 * The live session this tab owns, kept for a rejoin after a reload.
 * @param {import("./wire/protocol.js").OwnerFrame} f
 */
export function keepOwner(f) {
  try {
    sessionStorage.setItem(OWNER, JSON.stringify({ session: f.session, key: f.key }));
  } catch { /* storage off: a reload then ends the session as before */ }
}

/** @returns {{session: string, key: string} | null} the session this tab owned before a reload */
export function keptOwner() {
  try {
    const v = JSON.parse(sessionStorage.getItem(OWNER) ?? "null");
    return v && typeof v.session === "string" && typeof v.key === "string" ? { session: v.session, key: v.key } : null;
  } catch {
    return null;
  }
}

/** The session ended, was refused or left on purpose: nothing to rejoin. */
export function forgetOwner() {
  try {
    sessionStorage.removeItem(OWNER);
  } catch { /* nothing kept */ }
}

/** One websocket carrying protocol frames. */
export class Channel {
  /** @param {string} path @param {string | null} token @param {Handlers} on @param {Uint8Array | null} [first] */
  constructor(path, token, on, first = null) {
    this.on = on;
    this.done = false;
    this.ws = new WebSocket(socketUrl(path, token));
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      if (first) this.ws.send(first);
    };
    this.ws.onmessage = (ev) => this.receive(ev.data);
    this.ws.onclose = (ev) => {
      if (this.done) return;
      this.done = true;
      on.closed(closeWords(ev.code, ev.reason), ev.code === 1000, ev.code);
    };
  }

  /** @param {unknown} data */
  receive(data) {
    if (!(data instanceof ArrayBuffer)) {
      this.on.problem("The server sent a text message where a binary frame was expected.");
      return;
    }
    let frame;
    try {
      frame = decodeFrame(data);
    } catch (err) {
      this.on.problem(`A frame from the server could not be read: ${/** @type {Error} */ (err).message}`);
      return;
    }
    this.on.frame(frame);
  }

  /** @param {Uint8Array} bytes */
  send(bytes) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  /** Close without reporting it (the user asked). */
  close() {
    this.done = true;
    this.ws.close(1000);
  }
}

/**
 * Start a generation: the start request goes out as soon as the socket opens.
 * @param {import("./wire/protocol.js").StartRequest} request @param {string | null} token @param {Handlers} on
 */
export function startSession(request, token, on) {
  const ch = new Channel("/ws/session?rejoin=1", token, on, encodeStart(request));
  return { channel: ch, cancel: () => ch.send(encodeCommand("cancel")) };
}

/**
 * Take a live session back as its owner with the key its `owner` frame gave (a reload, a lost link).
 * @param {{session: string, key: string}} owned @param {string | null} token @param {Handlers} on
 */
export function rejoinSession(owned, token, on) {
  const ch = new Channel("/ws/session", token, on, encodeRejoin(owned.session, owned.key));
  return { channel: ch, cancel: () => ch.send(encodeCommand("cancel")) };
}

/** @param {string} sessionId @param {string | null} token @param {Handlers} on */
export function watchSession(sessionId, token, on) {
  return { channel: new Channel(`/ws/watch/${encodeURIComponent(sessionId)}`, token, on) };
}

/** @param {string} recordingId @param {string | null} token @param {Handlers} on */
export function replayRecording(recordingId, token, on) {
  const ch = new Channel(`/ws/replay/${encodeURIComponent(recordingId)}`, token, on);
  return {
    channel: ch,
    pause: () => ch.send(encodeCommand("pause")),
    resume: () => ch.send(encodeCommand("resume")),
    seek: (/** @type {number} */ index) => ch.send(encodeSeek(index)),
    speed: (/** @type {number} */ value) => ch.send(encodeSpeed(value)),
  };
}
