"""What the browser tests do to the viewer, in the user's terms: pick a file, start, wait,
read the heatmap's pixels, read the report. Selectors live here, not in the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medviz_core.recording.file import read_recording
from medviz_core.wire.server_frames import StartFrame, StepFrame

SETTLED = "() => { const c = document.getElementById('stage'); return c.dataset.animating !== 'true'; }"

# A 32 x 32 downsample of the stage canvas: small enough to compare, big enough to see a map change.
DIGEST = """() => {
  const src = document.getElementById('stage');
  const small = document.createElement('canvas');
  small.width = 32; small.height = 32;
  const ctx = small.getContext('2d');
  ctx.drawImage(src, 0, 0, 32, 32);
  return Array.from(ctx.getImageData(0, 0, 32, 32).data);
}"""


def start_session(page: Any, url: str, image: Path, max_tokens: int, record: bool = False, preset: str | None = None) -> None:
    page.goto(url)
    page.set_input_files("#file", str(image))
    page.fill("#max-tokens", str(max_tokens))
    if record:
        page.check("#record")
    if preset is not None:
        page.select_option("#preset", preset)
    page.click("#start")


def wait_phase(page: Any, phase: str, timeout_ms: float = 120_000) -> None:
    try:
        page.wait_for_selector(f"body[data-phase='{phase}']", state="attached", timeout=timeout_ms)
    except Exception as error:  # say where the page stood instead, so a failure reads without a rerun
        where = page.evaluate("""() => ({phase: document.body.dataset.phase, url: location.href,
            status: document.querySelector('#status')?.textContent,
            banner: document.querySelector('#banner')?.textContent,
            tokens: document.querySelectorAll('#report .tok').length})""")
        raise AssertionError(f"the page never reached phase {phase!r}: {where}") from error


def shown_step(page: Any) -> int:
    return int(page.get_attribute("#stage", "data-step"))


def digest(page: Any) -> list[int]:
    page.wait_for_function(SETTLED)
    values: list[int] = page.evaluate(DIGEST)
    return values


def report_text(page: Any) -> str:
    text: str = page.evaluate(
        "() => Array.from(document.querySelectorAll('#report .tok:not(.special)')).map(t => t.textContent).join('')"
    )
    return text


def token_count(page: Any) -> int:
    count: int = page.locator("#report .tok").count()
    return count


# The same 32 x 32 downsample for any canvas, by CSS selector.
CANVAS_DIGEST = """(selector) => {
  const src = document.querySelector(selector);
  const small = document.createElement('canvas');
  small.width = 32; small.height = 32;
  const ctx = small.getContext('2d');
  ctx.drawImage(src, 0, 0, 32, 32);
  return Array.from(ctx.getImageData(0, 0, 32, 32).data);
}"""


def canvas_digest(page: Any, selector: str) -> list[int]:
    values: list[int] = page.evaluate(CANVAS_DIGEST, selector)
    return values


def distinct_colours(pixels: list[int]) -> int:
    """How many different RGB colours a digest holds: 1 for a blank canvas."""
    return len({tuple(pixels[k:k + 3]) for k in range(0, len(pixels), 4)})


def start_study(page: Any, url: str, images: list[Path], labels: list[str], max_tokens: int, record: bool = False) -> None:
    """Pick several X-rays at once, label each, start."""
    page.goto(url)
    page.set_input_files("#file", [str(p) for p in images])
    page.wait_for_selector(f"#files li:nth-child({len(images)})")
    for k, label in enumerate(labels):
        field = page.locator(f"#files li[data-k='{k}'] input.label")
        field.fill(label)
        field.dispatch_event("change")
    page.fill("#max-tokens", str(max_tokens))
    if record:
        page.check("#record")
    page.click("#start")


def open_recording(page: Any, url: str, speed: str = "8") -> None:
    """Open the library, play its newest recording at a speed, wait for the end."""
    page.goto(url)
    page.click("#tab-library")
    page.wait_for_selector("#library-list .rec")
    page.click("#library-list .rec button.primary")
    page.wait_for_selector("#player:not([hidden])")
    page.select_option("#speed", speed)
    wait_phase(page, "ended")


def record_session(page: Any, url: str, recordings: Path, image: Path, max_tokens: int, question: str | None = None) -> str:
    """Run one recorded session to its end; the new recording's id."""
    before = {p.stem for p in recordings.glob("*.medviz")}
    page.goto(url)
    page.set_input_files("#file", str(image))
    page.fill("#max-tokens", str(max_tokens))
    if question is not None:
        page.check("input[name='prompt'][value='question']")
        page.fill("#question", question)
    page.check("#record")
    page.click("#start")
    wait_phase(page, "ended")
    (new,) = {p.stem for p in recordings.glob("*.medviz")} - before
    return new


def open_replay(page: Any, url: str, recording: str, pin: int) -> None:
    """Replay a recording at 8x to its end, then pin a token (which opens its detail drawer)."""
    page.goto(f"{url}/?replay={recording}")
    page.wait_for_selector("#player:not([hidden])")
    page.select_option("#speed", "8")
    wait_phase(page, "ended")
    page.click(f"#report .tok[data-i='{pin}']")
    page.wait_for_selector("#detail:not([hidden])")


def recorded(path: Path) -> tuple[StartFrame, list[StepFrame]]:
    """A recording's start frame and steps, as Python reads them (v1 recordings upgraded)."""
    recording = read_recording(path)
    assert recording.start is not None, f"{path} has no start frame"
    steps = [s.frame for s in recording.steps]
    assert all(isinstance(s, StepFrame) for s in steps)
    return recording.start, [s for s in steps if isinstance(s, StepFrame)]
