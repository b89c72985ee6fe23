// @ts-check
/**
 * Keyboard use of the viewer: arrows move the pinned token, Home/End jump, Escape unpins,
 * Space plays/pauses a replay, 1–7 pick a method, P enters or leaves presentation mode.
 * Keys typed into form fields are left alone.
 */

/**
 * @typedef {{move: (delta: number) => void, jump: (to: "first" | "last") => void, unpin: () => void,
 *   playPause: () => boolean, method: (k: number) => void, present: () => void}} KeyHandlers
 */

/** @param {KeyHandlers} on */
export function bindKeys(on) {
  window.addEventListener("keydown", (ev) => {
    const el = /** @type {HTMLElement | null} */ (ev.target instanceof HTMLElement ? ev.target : null);
    const typing = el !== null && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
    if (ev.key === "Escape") {
      on.unpin();
      return;
    }
    // a view that took the key itself (the 3D view turns with the arrows) keeps it
    if (typing || ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
      ev.preventDefault();
      on.move(ev.key === "ArrowLeft" ? -1 : 1);
    } else if (ev.key === "Home" || ev.key === "End") {
      ev.preventDefault();
      on.jump(ev.key === "Home" ? "first" : "last");
    } else if (ev.key === " " && el?.tagName !== "BUTTON") {
      if (on.playPause()) ev.preventDefault();
    } else if (/^[1-7]$/.test(ev.key)) {
      on.method(Number(ev.key) - 1);
    } else if (ev.key === "p" || ev.key === "P") {
      on.present();
    }
  });
}
