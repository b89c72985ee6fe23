"""Regenerate the README's pictures from sessions on the `demo` model.

Not a test (the browser tests keep their own screenshots in test-artifacts/). Starts
`medviz serve` on a free loopback port, drives Debian's Chromium through Playwright at
1600 x 1000, starts a study of two sample X-rays labelled PA and prior, waits for the end
and saves the page (both views side by side: docs/screenshot.png), then pins one token and
saves its analysis panel beside the picture, with the words it read linked
(docs/screenshot-detail.png). Then a second study labelled PA and lateral opens the pinned
token's 3D tab (docs/screenshot-3d.png). The sample data holds no lateral radiograph, so a
second PA stands in for it: the picture shows the view, not anatomy. Last, one X-ray in
presentation mode at a projector's 1024 x 768 (docs/screenshot-presentation.png). Every
picture shows the model's standing note (on `demo`, the stand-in banner).

Usage: .venv/bin/python docs/make_screenshot.py [--model demo] [--out docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[1]
CXR = REPO.parent / "shared" / "data" / "cxr"
STUDY = [("nih_00000001_000.png", "PA"), ("nih_00000003_001.png", "prior")]
PAIR = [("nih_00000001_000.png", "PA"), ("nih_00027426_000_512.png", "lateral")]  # no lateral in the samples
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"medviz serve exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"{url}/api/health", timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit("medviz serve did not come up")


def run_study(page: Page, url: str, study: list[tuple[str, str]], tokens: int) -> None:
    """Open the app, add the study's files with their labels, start and wait for the end."""
    page.goto(url)
    page.set_input_files("#file", [str(CXR / name) for name, _ in study])
    page.wait_for_selector(f"#files li:nth-child({len(study)})")
    for k, (_, label) in enumerate(study):
        field = page.locator(f"#files li[data-k='{k}'] input.label")
        field.fill(label)
        field.dispatch_event("change")
    page.fill("#max-tokens", str(tokens))
    page.click("#start")
    page.wait_for_selector("body[data-phase='ended']", state="attached", timeout=600_000)
    page.wait_for_function("() => document.querySelector('#stage').dataset.animating !== 'true'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshot.png"),
                        help="the study view; the pinned token's panel goes beside it as <name>-detail.png")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--pin", type=int, default=14, help="the token to pin")
    parser.add_argument("--size", default="1600x1000", help="the window, WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "server.cli.main", "serve", "--model", args.model,
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            run_study(page, url, STUDY, args.tokens)
            time.sleep(0.5)
            page.screenshot(path=args.out)
            page.click(f"#report .tok[data-i='{args.pin}']")
            page.wait_for_selector("#detail:not([hidden])")
            page.wait_for_function("() => document.querySelectorAll('#context-links path.link').length > 0")
            time.sleep(0.5)
            out = Path(args.out)
            page.screenshot(path=str(out.with_name(f"{out.stem}-detail{out.suffix}")))
            run_study(page, url, PAIR, args.pin + 2)
            page.click(f"#report .tok[data-i='{args.pin}']")
            page.wait_for_selector("#detail:not([hidden])")
            page.click("#detail-tab-volume")
            page.wait_for_selector(f"#volume-canvas[data-step='{args.pin}'][data-empty='false']", timeout=120_000)
            time.sleep(0.5)
            page.screenshot(path=str(out.with_name(f"{out.stem}-3d{out.suffix}")))
            projector = browser.new_page(viewport={"width": 1024, "height": 768})
            run_study(projector, url, STUDY[:1], args.tokens)
            projector.keyboard.press("p")
            projector.wait_for_selector("body[data-present='true']")
            time.sleep(0.5)
            projector.screenshot(path=str(out.with_name(f"{out.stem}-presentation{out.suffix}")))
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"wrote {args.out} and its -detail, -3d and -presentation twins")


if __name__ == "__main__":
    main()
