// @ts-check
/**
 * Websocket clients for the three server routes: start a session, watch one, replay one.
 *
 * Owns connections: URLs (with the access token when the page has one), binary frames
 * in and out, and close codes turned into plain words. It decodes with protocol.js and
 * hands frames to a callback; it never touches the state or the DOM.
 */

import { decodeFrame, encodeCommand, encodeSeek, encodeSpeed, encodeStart } from "./protocol.js";

/**
 * @typedef {{frame: (f: import("./protocol.js").Frame) => void,
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
 * @param {import("./protocol.js").StartRequest} request @param {string | null} token @param {Handlers} on
 */
export function startSession(request, token, on) {
  const ch = new Channel("/ws/session", token, on, encodeStart(request));
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
