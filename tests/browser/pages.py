"""What the browser tests do to the viewer, in the user's terms: pick a file, start, wait,
read the heatmap's pixels, read the report. Selectors live here, not in the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def start_session(page: Any, url: str, image: Path, max_tokens: int, record: bool = False) -> None:
    page.goto(url)
    page.set_input_files("#file", str(image))
    page.fill("#max-tokens", str(max_tokens))
    if record:
        page.check("#record")
    page.click("#start")


def wait_phase(page: Any, phase: str, timeout_ms: float = 120_000) -> None:
    page.wait_for_selector(f"body[data-phase='{phase}']", state="attached", timeout=timeout_ms)


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
