"""The on-demand analysis views on a recorded session, in the real browser against
`medviz serve --model tiny`: gradient relevancy as a seventh method, the layer x head
explorer, faithfulness curves, agreement with a drawn box, results replayed from the
recording, answers reaching the request that asked (by id) when they come out of order,
and two recordings compared with their difference map."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.browser.conftest import Server, Watched, open_page, shoot
from tests.browser.pages import canvas_digest, distinct_colours, open_replay, record_session, wait_phase

PIN = 3


@pytest.fixture(scope="module")
def recorded(browser: Any, server: Server, cxr_dir: Path) -> Iterator[str]:
    """One recorded single-image session of 10 tokens."""
    watched = open_page(browser, server)
    try:
        yield record_session(watched.page, server.url, server.recordings, cxr_dir / "nih_00000001_000.png", max_tokens=10)
    finally:
        watched.page.context.close()


def model_shape(server: Server, recording: str) -> tuple[int, int]:
    """(layers, heads) from the recording's start frame."""
    with (server.recordings / f"{recording}.medviz").open("rb") as f:
        start = next(iter(msgpack.Unpacker(f, raw=False)))
    return int(start["model"]["layers"]), int(start["model"]["heads"])


def test_gradient_relevancy_becomes_a_seventh_method_of_the_pinned_token(tab: Watched, server: Server, recorded: str) -> None:
    page = tab.page
    open_replay(page, server.url, recorded, PIN)
    assert page.locator(".method-tile[data-method='gradient']").count() == 0
    page.click("#gradient-run")
    page.wait_for_selector(".method-tile[data-method='gradient']", timeout=120_000)
    assert page.inner_text("#gradient-status") == "done"
    assert distinct_colours(canvas_digest(page, ".method-tile[data-method='gradient'] canvas")) > 20
    page.select_option("#method", "gradient")
    page.wait_for_selector("#stage[data-method='gradient']")
    page.click("#detail-tab-token")
    page.wait_for_function("() => [...document.querySelectorAll('#detail-tiles figcaption')].some(c => c.textContent === 'Gradient')")
    shoot(page, "30_gradient")
    assert tab.errors == []


def test_the_layer_head_explorer_shows_every_head_and_one_over_the_xray(tab: Watched, server: Server, recorded: str) -> None:
    page = tab.page
    open_replay(page, server.url, recorded, PIN)
    page.click("#detail-tab-heads")
    page.click("#heads .run")
    page.wait_for_selector("#heads .head-grid .cell", timeout=120_000)
    layers, heads = model_shape(server, recorded)
    assert page.locator("#heads .head-grid .cell").count() == layers * heads
    page.select_option("#heads select", "mass-desc")
    page.wait_for_function("() => document.querySelector('#heads .cell')")
    masses = [float(t.split(" · ")[1].rstrip("%")) for t in page.locator("#heads .cell span").all_inner_texts()]
    assert masses == sorted(masses, reverse=True)
    page.click("#heads .head-grid .cell >> nth=0")
    page.wait_for_selector("#head-focus[data-head]")
    assert page.inner_text("#heads .head-focus figcaption").startswith("Layer ")
    shoot(page, "31_heads")
    assert tab.errors == []


def test_faithfulness_plots_deletion_and_insertion_with_the_random_baseline(tab: Watched, server: Server, recorded: str) -> None:
    page = tab.page
    open_replay(page, server.url, recorded, PIN)
    page.click("#detail-tab-faith")
    page.select_option("#faith select >> nth=1", "4")
    page.click("#faith .run")
    page.wait_for_selector("#faith canvas.plot", timeout=180_000)
    assert [page.get_attribute(f"#faith canvas.plot-{k}", "data-curves") for k in ("deletion", "insertion")] == ["2", "2"]
    text = page.inner_text("#faith .auc")
    assert text.startswith("Deletion AUC ") and " vs random " in text and "Insertion AUC " in text
    shoot(page, "32_faithfulness")
    assert tab.errors == []


def test_faithfulness_across_the_report_shows_a_batch_from_the_cli_and_can_score_the_rest(
    tab: Watched, server: Server, recorded: str
) -> None:
    from server.cli.main import main

    path = server.recordings / f"{recorded}.medviz"
    assert main(["faithfulness", str(path), "--methods", "raw", "--steps", "2", "--tokens", "1:2"]) == 0
    page = tab.page
    open_replay(page, server.url, recorded, PIN)
    page.click("#detail-tab-faith")
    page.select_option("#faith select >> nth=0", "raw")
    row = page.wait_for_selector("#faith .faith-report tr[data-method='raw']")
    assert row is not None
    cells = [c.inner_text() for c in row.query_selector_all("td")]
    assert cells[0] == "Raw" and cells[1] == "2" and cells[4].endswith(" of 2")
    hint = page.inner_text("#faith .faith-report .hint")
    assert hint.startswith("2 of ") and " tokens scored with Raw" in hint
    page.click("#faith .run-all")
    page.wait_for_function("() => document.querySelector('#faith .faith-report .hint').textContent.includes('waiting or running')")
    shoot(page, "33_faithfulness_report")
    assert page.is_disabled("#faith .run-all")
    assert tab.errors == []


def test_agreement_scores_every_method_against_an_added_box(tab: Watched, server: Server, recorded: str) -> None:
    page = tab.page
    open_replay(page, server.url, recorded, PIN)
    page.click("#detail-tab-agree")
    assert page.is_disabled("#agree .run")
    page.click("#agree .add-box")
    page.wait_for_selector("#agree .box-row")
    box = page.locator("#agree-canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.7, steps=4)
    page.mouse.up()
    page.wait_for_selector("#agree .box-row >> nth=1")
    drawn = [int(page.input_value(f"#agree .box-row >> nth=1 >> input >> nth={k}")) for k in range(1, 5)]
    assert drawn[2] > 0 and drawn[3] > 0 and drawn[0] < drawn[0] + drawn[2]
    page.click("#agree .run")
    page.wait_for_selector("#agree table.scores tbody tr", timeout=120_000)
    rows = page.locator("#agree table.scores tbody tr")
    assert rows.count() >= 6
    for row in rows.all_inner_texts():
        method, hit, iou, coverage = row.split("\t")
        assert hit in ("hit", "miss") and 0.0 <= float(iou) <= 1.0 and coverage.endswith("%")
    shoot(page, "33_agreement")
    assert tab.errors == []


def test_a_replay_shows_the_analyses_recorded_with_the_session(tab: Watched, second_tab: Watched, server: Server, recorded: str) -> None:
    open_replay(tab.page, server.url, recorded, PIN + 3)
    assert tab.page.locator(".method-tile[data-method='gradient']").count() == 0
    tab.page.click("#gradient-run")
    tab.page.wait_for_selector(".method-tile[data-method='gradient']", timeout=120_000)
    page = second_tab.page
    open_replay(page, server.url, recorded, PIN + 3)
    page.wait_for_selector(".method-tile[data-method='gradient']")
    assert page.inner_text("#gradient-status") == "done"
    assert tab.errors == [] and second_tab.errors == []


def hold_answers_to_the_first_request(order: list[tuple[str, str]]) -> Any:
    """A route for the page's replay socket: every answer to the first `analyze` waits until an
    answer to a later request has reached the page, so the two arrive out of request order.
    `order` gets ("asked", id) and ("answered", id) in the order the page sent and received them."""
    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        held: list[Any] = []
        released = [False]

        def answers(message: Any) -> str | None:
            frame = msgpack.unpackb(message, raw=False) if isinstance(message, bytes) else {}
            return frame.get("id") if frame.get("type") in ("analysis", "error") else None

        def to_page(message: Any) -> None:
            rid = answers(message)
            asked = [i for kind, i in order if kind == "asked"]
            if rid is None or released[0]:
                if rid is not None:
                    order.append(("answered", rid))
                ws.send(message)
            elif rid == asked[0]:
                held.append(message)
            else:
                order.append(("answered", rid))
                ws.send(message)
                released[0] = True
                for m in held:
                    order.append(("answered", asked[0]))
                    ws.send(m)

        def to_server(message: Any) -> None:
            frame = msgpack.unpackb(message, raw=False) if isinstance(message, bytes) else {}
            if frame.get("type") == "analyze":
                order.append(("asked", frame["id"]))
            server.send(message)

        server.on_message(to_page)
        ws.on_message(to_server)

    return route


def test_answers_reach_the_request_that_asked_when_they_come_out_of_order(tab: Watched, server: Server, recorded: str) -> None:
    page = tab.page
    order: list[tuple[str, str]] = []
    page.route_web_socket("**/ws/replay/**", hold_answers_to_the_first_request(order))
    open_replay(page, server.url, recorded, 8)  # a token and method no other test scores: nothing recorded yet
    page.click("#detail-tab-faith")
    page.select_option("#faith select >> nth=0", "flow")
    page.select_option("#faith select >> nth=1", "4")
    page.click("#faith .run")  # asked first, answered last
    page.wait_for_function("() => document.querySelector('#faith .job-status').textContent === 'requested…'")
    page.click("#detail-tab-agree")
    page.click("#agree .add-box")
    x = page.locator("#agree .box-row >> nth=0 >> input >> nth=1")
    x.fill("99999")
    x.dispatch_event("change")
    page.click("#agree .run")  # refused at once: a box outside the image
    page.wait_for_function("() => document.querySelector('#agree .job-status').textContent.startsWith('failed: ')")
    refused = page.inner_text("#agree .job-status")
    assert refused.startswith("failed: box 'box 1' xywh [99999, ")
    page.click("#detail-tab-faith")
    page.wait_for_selector("#faith canvas.plot", timeout=180_000)
    first, second = [i for kind, i in order if kind == "asked"]
    answered = [i for kind, i in order if kind == "answered"]
    assert answered[0] == second and first in answered
    assert page.is_hidden("#banner")
    assert tab.errors == []


def test_two_recordings_play_side_by_side_with_their_difference_map(tab: Watched, server: Server, recorded: str, cxr_dir: Path) -> None:
    page = tab.page
    other = record_session(page, server.url, server.recordings, cxr_dir / "nih_00000001_000.png", max_tokens=10,
                           question="Is the heart enlarged?")
    page.click("#tab-compare")
    page.wait_for_selector(f"#compare-a option[value='{recorded}']", state="attached")
    page.select_option("#compare-a", recorded)
    page.select_option("#compare-b", other)
    page.click("#compare-load")
    page.wait_for_selector("#compare-canvas-diff[data-step='0']")
    assert distinct_colours(canvas_digest(page, "#compare-canvas-diff")) > 20
    assert canvas_digest(page, "#compare-canvas-a") != canvas_digest(page, "#compare-canvas-b")
    page.evaluate("""() => { const s = document.getElementById('compare-seek'); s.value = '5'; s.dispatchEvent(new Event('input')); }""")
    page.wait_for_selector("#compare-canvas-diff[data-step='5']")
    assert page.inner_text("#compare-label") == "token 6 / 10"
    assert page.get_attribute("#compare-canvas-a", "data-step") == "5" and page.get_attribute("#compare-canvas-b", "data-step") == "5"
    page.click("#compare-play")
    page.wait_for_function("() => document.getElementById('compare-label').textContent === 'token 10 / 10'")
    shoot(page, "34_compare")
    assert tab.errors == []


def test_a_finished_live_session_scores_the_boxes_of_its_labels_csv_row(tab: Watched, server: Server, cxr_dir: Path) -> None:
    page = tab.page
    page.goto(server.url)
    page.set_input_files("#file", str(cxr_dir / "commons_haggstrom_normal_pa.jpg"))
    page.fill("#max-tokens", "8")
    page.click("#start")
    wait_phase(page, "ended")
    page.click("#report .tok[data-i='2']")
    page.click("#detail-tab-agree")
    page.set_input_files("#agree .labels-file", str(cxr_dir / "labels.csv"))
    page.wait_for_selector("#agree .box-row >> nth=2")
    assert [page.input_value(f"#agree .box-row >> nth={k} >> input >> nth=0") for k in range(3)] == ["heart", "right lung", "left lung"]
    assert "commons_haggstrom_normal_pa.jpg" in page.inner_text("#agree")
    page.click("#agree .run")
    page.wait_for_selector("#agree table.scores tbody tr", timeout=120_000)
    assert page.locator("#agree table.scores tbody tr").count() >= 6
    shoot(page, "35_agreement_labels_csv")
    assert tab.errors == []
