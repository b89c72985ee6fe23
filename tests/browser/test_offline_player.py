"""The offline player in the real browser: `medviz html`'s file opened from disk (file://, every request
that is not file: or data: blocked) plays to its end at `#play&speed=8` and shows what the served replay of
the same recording shows, the report and the last token's view pixel for pixel, with the analyses that need
the model turned off and saying why, and no Video button (nothing is fetched); the player's "Offline player" button downloads the same file; the
in-page replay's clock keeps the order and timing of the replay socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.cli.main import main
from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import canvas_digest, distinct_colours, record_session, report_text, shown_step, wait_phase
from tests.browser.test_context import READ, pin
from tests.browser.test_replay import exported_view


def offline_page(browser: Any) -> tuple[Watched, list[str]]:
    """A page in a new context that lets through only file: and data: requests; the addresses it blocked."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    watched = Watched(page=context.new_page())
    blocked: list[str] = []

    def only_local(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    watched.page.route("**/*", only_local)
    watched.page.on("console", lambda m: watched.errors.append(f"console: {m.text}") if m.type == "error" else None)
    watched.page.on("pageerror", lambda e: watched.errors.append(f"pageerror: {e}"))
    return watched, blocked


def pinned_reads(page: Any, token: int) -> list[list[Any]]:
    """Pin a token; the words it read as the page marks them (where, which, how much)."""
    pin(page, token)
    reads: list[list[Any]] = page.evaluate(READ)
    return reads


def test_the_offline_player_plays_from_disk_with_no_network_as_the_served_replay_shows_it(
    browser: Any, tab: Watched, server: Server, cxr_dir: Path, tmp_path: Path
) -> None:
    recording = record_session(tab.page, server.url, server.recordings, cxr_dir / "nih_00000003_001.png", max_tokens=6)
    served = tab.page
    served.goto(f"{server.url}/?replay={recording}")
    served.wait_for_selector("#player:not([hidden])")
    served.select_option("#speed", "8")
    wait_phase(served, "ended")
    served.click("#gradient-run")  # the last token's gradient, appended to the recording as a result
    served.wait_for_selector(".method-tile[data-method='gradient']", timeout=120_000)
    out = tmp_path / "player.html"
    assert main(["html", str(server.recordings / f"{recording}.medviz"), "--out", str(out)]) == 0
    with served.expect_download() as download:
        served.click("#offline-player")
    assert Path(download.value.path()).read_bytes() == out.read_bytes()
    served_text, served_view, last = report_text(served), exported_view(served), shown_step(served)
    served_reads = pinned_reads(served, 3)

    offline, blocked = offline_page(browser)
    page = offline.page
    asked: list[str] = []  # every request but the file itself and its data: modules
    page.on("request", lambda request: None if request.url.startswith(("data:", out.as_uri()))
            else asked.append(request.url))
    try:
        page.goto(f"{out.as_uri()}#play&speed=8")
        wait_phase(page, "ended")
        shoot(page, "offline_player_ended")
        assert page.inner_text("#status").startswith("Done")
        assert report_text(page) == served_text != ""
        assert shown_step(page) == last == 5
        assert distinct_colours(canvas_digest(page, "#stage")) > 16  # the X-ray under the last token's map
        assert exported_view(page) == served_view
        assert distinct_colours(canvas_digest(page, ".method-tile[data-method='gradient'] canvas")) > 20  # recorded
        assert page.inner_text("#gradient-status") == "done"
        assert pinned_reads(page, 3) == served_reads != []  # what token 3 read, as the served replay marks it
        assert page.get_attribute("#gradient-run", "title") == "needs the model: open the recording in medviz serve"
        assert page.is_disabled("#gradient-run")
        assert page.get_attribute("#export-dicom", "title") == "needs the server: open the recording in medviz serve"
        assert page.is_disabled("#export-dicom")
        assert page.is_hidden("#offline-player") and page.is_hidden("#tab-library")
        assert page.is_hidden("#video") and page.is_disabled("#video")  # no server to render a video
        page.evaluate("document.getElementById('video').click()")  # even a script's click asks nothing
        assert asked == [] and page.inner_text("#video-status") == ""
        assert blocked == [] and offline.errors == [] and tab.errors == []
    finally:
        page.context.close()


CLOCK = """async () => {
  const { InPageReplay, recorded } = await import('/js/offline/replay.js');
  let now = 0; const due = [];
  const timer = { now: () => now, after: (ms, fn) => due.push([now + ms, fn]) - 1, cancel: (id) => { due[id] = null; } };
  const run = (until) => { for (;;) {
    const k = due.findIndex((d) => d && d[0] <= until && due.every((e) => !e || e[0] >= d[0]));
    if (k < 0) { now = until; return; }
    const [at, fn] = due[k]; due[k] = null; now = at; fn(); } };
  const step = (i, tMs) => ({ type: 'step', i, tMs });
  const rec = recorded([{ type: 'start' }, step(0, 0), step(1, 100), { type: 'analysis', index: 1 }, step(2, 400), { type: 'end' }]);
  const seen = [];
  const replay = new InPageReplay(rec, '', (f) => seen.push(f.type === 'replay' ? `replay@${f.at}${f.paused ? ' paused' : ''} ${f.speed}x`
    : f.type === 'step' ? `step ${f.i} at ${now}` : f.type), { speed: 2, timer });
  replay.begin();
  run(60);
  replay.pause();
  run(1000);
  replay.resume();
  run(1100);
  replay.seek(0);
  run(2000);
  return seen;
}"""


def test_the_in_page_replay_sends_as_the_replay_socket_does_at_its_speed_with_pause_and_seek(
    tab: Watched, server: Server
) -> None:
    tab.page.goto(server.link)
    assert tab.page.evaluate(CLOCK) == [
        "replay@0 2x", "start", "step 0 at 0", "step 1 at 50", "analysis",  # 100 recorded ms at 2x: 50 ms
        "replay@2 paused 2x",  # paused at 60 ms, 50 recorded ms before step 2 falls due
        "replay@2 2x",  # resumed at 1000: step 2 falls due at 1140, after the seek at 1100
        "replay@0 2x", "step 0 at 1100", "step 1 at 1150", "analysis", "step 2 at 1300", "end",
    ]
