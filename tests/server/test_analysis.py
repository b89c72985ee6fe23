"""On-demand analysis over real sockets: live sessions, watchers and replays, cache, cancel, recording."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from medviz_core.analyses.compute import job_id
from medviz_core.imaging.load import load_image
from medviz_core.recording.file import read_recording
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import AnalyzeRequest, BoxRequest
from medviz_core.wire.codec import QuantMap
from medviz_core.wire.results import AgreementResult, AnalysisFrame, FaithfulnessResult, GradientResult, HeadsResult
from medviz_core.wire.server_frames import StartFrame, StepFrame
from server import analysis_jobs
from server.analysis_jobs import FINAL
from tests.server.helpers import LiveServer, kinds, receive_all, recv, run, session, session_of, start_bytes
from tests.wire_client import encode_analyze, encode_command

GRADIENT = AnalyzeRequest("gradient", 1)
HEADS = AnalyzeRequest("heads", 2)
FAITH = AnalyzeRequest("faithfulness", 1, method="raw", steps=2)
AGREE = AnalyzeRequest("agreement", 0, boxes=(BoxRequest("heart", (300, 400, 400, 300), 0),))


async def until_done(ws: ClientConnection, *requests: AnalyzeRequest) -> list[bytes]:
    """Frames until the jobs of `requests` have given their final word (a replay also sends recorded ones)."""
    jobs = {job_id(r) for r in requests}
    out: list[bytes] = []
    while jobs - {f.job for f in analyses(out) if f.status in FINAL}:
        out.append(await recv(ws))
    return out


def _final(data: bytes) -> bool:
    frame = frames.decode(data)
    return isinstance(frame, AnalysisFrame) and frame.status in FINAL


def analyses(data: list[bytes], *requests: AnalyzeRequest) -> list[AnalysisFrame]:
    """The analysis frames, only those of `requests` when given."""
    jobs = {job_id(r) for r in requests}
    return [f for f in map(frames.decode, data) if isinstance(f, AnalysisFrame) and (not jobs or f.job in jobs)]


@pytest.fixture(scope="module")
def recorded(live: LiveServer, sample_bytes: bytes) -> tuple[str, list[bytes]]:
    data = run(session(live, sample_bytes, max_new_tokens=4, record=True))
    return session_of(data[0]), data


def direct(engine: Any, data: list[bytes], request: AnalyzeRequest) -> dict[str, Any]:
    """The result map the analysis functions give when called here, on the frames' session."""
    from medviz_core.analyses.agreement import Box, box_coverage, iou_top_regions, pointing_game
    from medviz_core.analyses.faithfulness import faithfulness_report
    from medviz_core.analyses.gradient import gradient_relevancy, layer_head_view, token_context, token_scorer

    start = frames.decode(data[0])
    assert isinstance(start, StartFrame)
    steps = [f for f in map(frames.decode, data) if isinstance(f, StepFrame)]
    images = [load_image(i.png) for i in start.images]
    if request.kind == "agreement":
        size = start.images[0].size
        boxes = [Box(b.label, "box", *b.xywh, *size) for b in request.boxes]
        values = {m: q.values((16, 16)) for m, q in steps[request.index].maps.items()}
        return AgreementResult.of({m: (pointing_game(v, boxes, size), iou_top_regions(v, boxes, size),
                                            box_coverage(v, boxes, size)) for m, v in values.items()}, 0)
    context = token_context(engine, images, start.question, [s.token_id for s in steps], request.index,
                            [i.label for i in start.images])
    if request.kind == "gradient":
        return {"maps": gradient_relevancy(engine, context)}
    if request.kind == "heads":
        view = layer_head_view(engine, context)
        return {"maps": view.maps, "mass": view.image_mass, "entropy": view.entropy}
    relevancy = steps[request.index].maps[request.method].values((16, 16))
    report = faithfulness_report(images[0], relevancy, token_scorer(engine, context, start.question),
                                 token=request.index, method=request.method, steps=request.steps)
    assert report is not None
    return FaithfulnessResult.of(request.method, report.deletion, report.insertion, report.random_deletion,
                                      report.random_insertion)


def assert_maps_match(quantised: tuple[QuantMap, ...], expected: np.ndarray) -> None:
    flat = expected.reshape(-1, 16, 16)
    assert len(quantised) == len(flat)
    for quant, values in zip(quantised, flat):
        assert np.abs(quant.values((16, 16)) - values).max() <= (quant.hi - quant.lo) / 255 + 1e-7


def assert_result_matches(frame: AnalysisFrame, expected: dict[str, Any]) -> None:
    assert frame.status == "done" and frame.message == ""
    result = frame.result
    if isinstance(result, GradientResult):
        assert_maps_match(result.maps, expected["maps"])
    elif isinstance(result, HeadsResult):
        assert (result.layers, result.heads) == expected["mass"].shape
        assert result.mass == tuple(float(v) for v in expected["mass"].ravel())
        assert result.entropy == tuple(float(v) for v in expected["entropy"].ravel())
        assert_maps_match(result.maps, expected["maps"])
    else:
        assert frames.decode(AnalysisFrame("x", frame.kind, frame.index, "done", "", expected).to_wire()).result == result


def test_each_kind_on_a_live_session_answers_done_with_the_direct_values(
    live: LiveServer, sample_bytes: bytes, tiny_engine: Any
) -> None:
    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=6, record=True))
            got = [await recv(ws) for _ in range(4)]  # start and steps 0, 1, 2
            for request in (GRADIENT, HEADS, FAITH, AGREE):
                await ws.send(encode_analyze(request))
            return got + await receive_all(ws)  # the socket closes once every job has answered

    data = run(scenario())
    assert kinds(data).count("end") == 1 and kinds(data).count("step") == 6
    done = {f.kind: f for f in analyses(data) if f.status == "done"}
    assert sorted(done) == ["agreement", "faithfulness", "gradient", "heads"]
    for request in (GRADIENT, HEADS, FAITH, AGREE):
        assert done[request.kind].index == request.index
        assert_result_matches(done[request.kind], direct(tiny_engine, data, request))
    statuses = [f.status for f in analyses(data) if f.kind == "gradient"]
    assert statuses == ["queued", "running", "done"]
    recording = read_recording(live.settings.recordings / f"{session_of(data[0])}.medviz")
    assert sorted(f.data for f in recording.analyses) == sorted(f for f in data if _final(f))
    assert [f.data for f in recording.frames if not isinstance(f.frame, AnalysisFrame)] == [
        d for d in data if frames.decode(d).type != "analysis"]


def test_streamed_tokens_do_not_change_when_analyses_come_in_mid_stream(live: LiveServer, sample_bytes: bytes) -> None:
    async def tokens(ask: bool) -> list[int]:
        async with connect(f"{live.ws}/ws/session", max_size=None) as ws:
            await ws.send(start_bytes(sample_bytes, max_new_tokens=6))
            got = [await recv(ws) for _ in range(2)]
            if ask:
                for request in (AnalyzeRequest("gradient", 0), AnalyzeRequest("heads", 0)):
                    await ws.send(encode_analyze(request))
            got += await receive_all(ws)
        return [f.token_id for f in map(frames.decode, got) if isinstance(f, StepFrame)]

    plain = run(tokens(False))
    assert len(plain) == 6 and run(tokens(True)) == plain


def test_each_kind_on_a_recording_is_done_recorded_and_sent_by_a_later_replay(
    live: LiveServer, recorded: tuple[str, list[bytes]], tiny_engine: Any
) -> None:
    name, data = recorded

    async def ask() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8", max_size=None) as ws:
            for request in (GRADIENT, HEADS, FAITH, AGREE):
                await ws.send(encode_analyze(request))
            return await until_done(ws, GRADIENT, HEADS, FAITH, AGREE)

    got = analyses(run(ask()), GRADIENT, HEADS, FAITH, AGREE)
    done = {f.kind: f for f in got if f.status == "done"}
    for request in (GRADIENT, HEADS, FAITH, AGREE):
        assert_result_matches(done[request.kind], direct(tiny_engine, data, request))
    recording = read_recording(live.settings.recordings / f"{name}.medviz")
    assert [f.frame for f in recording.analyses] == [f for f in got if f.status == "done"]

    async def replay() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8", max_size=None) as ws:
            out: list[bytes] = []
            while not out or frames.decode(out[-1]).type != "end":
                out.append(await recv(ws))
            return out

    replayed = run(replay())[1:]
    by_index = {f.frame.index: [] for f in recording.analyses if isinstance(f.frame, AnalysisFrame)}
    for f in recording.analyses:
        assert isinstance(f.frame, AnalysisFrame)
        by_index[f.frame.index].append(f.data)
    expected = [data[0]]
    for step in data[1:-1]:
        index = frames.decode(step)
        assert isinstance(index, StepFrame)
        expected += [step, *by_index.get(index.index, [])]
    assert replayed == [*expected, data[-1]]


def test_a_repeat_request_is_answered_from_the_cache_without_running_again(
    live: LiveServer, recorded: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = recorded
    calls: list[str] = []
    real = analysis_jobs.compute

    def counted(engine: Any, source: Any, request: AnalyzeRequest, cancel: threading.Event) -> Any:
        calls.append(request.kind)
        return real(engine, source, request, cancel)

    monkeypatch.setattr(analysis_jobs, "compute", counted)
    request = AnalyzeRequest("gradient", 3)

    async def twice() -> tuple[list[bytes], list[bytes]]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8", max_size=None) as ws:
            await ws.send(encode_analyze(request))
            first = await until_done(ws, request)
            await ws.send(encode_analyze(request))
            return first, await until_done(ws, request)

    first, second = run(twice())
    assert calls == ["gradient"]
    assert [f.status for f in analyses(first, request)] == ["queued", "running", "done"]
    assert analyses(second, request) == [analyses(first, request)[-1]]
    mine = {job_id(request)}
    assert [d for d in second if _final(d) and frames.decode(d).job in mine] == [  # type: ignore[union-attr]
        d for d in first if _final(d) and frames.decode(d).job in mine]  # type: ignore[union-attr]


def test_cancel_analysis_gives_status_cancelled(
    live: LiveServer, recorded: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = recorded

    def waits(engine: Any, source: Any, request: AnalyzeRequest, cancel: threading.Event) -> Any:
        cancel.wait(60)
        return None

    monkeypatch.setattr(analysis_jobs, "compute", waits)

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8", max_size=None) as ws:
            await ws.send(encode_analyze(slow))
            out: list[bytes] = []
            while not any(f.status == "running" for f in analyses(out, slow)):
                out.append(await recv(ws))
            await ws.send(encode_command("cancel_analysis", job=job_id(slow)))
            return out + await until_done(ws, slow)

    slow = AnalyzeRequest("heads", 0)
    got = analyses(run(scenario()), slow)
    assert [f.status for f in got] == ["queued", "running", "cancelled"]
    assert got[-1].message == "cancelled by a client" and got[-1].result is None


def test_an_analysis_nobody_waits_for_any_more_is_cancelled(
    live: LiveServer, recorded: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = recorded
    cancelled = threading.Event()

    def waits(engine: Any, source: Any, request: AnalyzeRequest, cancel: threading.Event) -> Any:
        if cancel.wait(30):
            cancelled.set()
        return None

    monkeypatch.setattr(analysis_jobs, "compute", waits)
    slow = AnalyzeRequest("faithfulness", 2, method="flow", steps=3)

    async def ask_and_leave() -> None:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8", max_size=None) as ws:
            await ws.send(encode_analyze(slow))
            out: list[bytes] = []
            while not any(f.status == "running" for f in analyses(out, slow)):
                out.append(await recv(ws))

    run(ask_and_leave())
    assert cancelled.wait(10), "the job went on after its only asker closed the socket"


def test_an_analysis_keeps_running_while_another_socket_still_waits_for_it(
    live: LiveServer, recorded: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = recorded
    release, withdrawn = threading.Event(), threading.Event()
    cancel_seen: list[bool] = []
    real_compute, real_withdraw = analysis_jobs.compute, analysis_jobs.AnalysisJobs.withdraw

    def gated(engine: Any, source: Any, request: AnalyzeRequest, cancel: threading.Event) -> Any:
        release.wait(30)
        cancel_seen.append(cancel.is_set())
        return real_compute(engine, source, request, cancel)

    def noted(self: Any, *args: Any) -> None:
        real_withdraw(self, *args)
        withdrawn.set()

    monkeypatch.setattr(analysis_jobs, "compute", gated)
    monkeypatch.setattr(analysis_jobs.AnalysisJobs, "withdraw", noted)
    shared = AnalyzeRequest("faithfulness", 3, method="raw", steps=2)
    url = f"{live.ws}/ws/replay/{name}?speed=8"

    async def until_running(ws: ClientConnection) -> None:
        out: list[bytes] = []
        while not any(f.status == "running" for f in analyses(out, shared)):
            out.append(await recv(ws))

    async def scenario() -> list[bytes]:
        async with connect(url, max_size=None) as stays:
            async with connect(url, max_size=None) as leaves:
                await leaves.send(encode_analyze(shared))
                await until_running(leaves)
                await stays.send(encode_analyze(shared))
                await until_running(stays)
            assert await asyncio.to_thread(withdrawn.wait, 10), "the closed socket never withdrew"
            release.set()
            return await until_done(stays, shared)

    got = analyses(run(scenario()), shared)
    assert [f.status for f in got][-1] == "done"
    assert cancel_seen == [False]


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"kind": "magic", "index": 0}, "analysis kind must be one of gradient, heads, faithfulness, agreement, volume, dicom; got 'magic'"),
        ({"kind": "gradient", "index": 9}, "token index 9 has not been generated; the recording has 4 token(s) so far"),
        ({"kind": "faithfulness", "index": 0, "method": "vibes"},
         "faithfulness method must be one of raw, layer_weighted, head_importance, flow, rollout, consensus or "
         "gradient; got 'vibes'"),
        ({"kind": "agreement", "index": 0, "boxes": [{"label": "x", "xywh": [900, 900, 200, 50]}]},
         "box 'x' xywh [900, 900, 200, 50] must lie inside image 0 (1024x1024)"),
        ({"kind": "agreement", "index": 0, "boxes": []}, "agreement needs 1..32 boxes; got 0"),
        ({"kind": "agreement", "index": 0, "boxes": [{"label": "x", "xywh": [0, 0, 8, 8], "image": 1}]},
         "box 'x' is on image 1; the recording has 1"),
    ],
)
def test_a_bad_analysis_request_gets_a_clear_error_and_the_replay_goes_on(
    live: LiveServer, recorded: tuple[str, list[bytes]], request_fields: dict[str, Any], message: str
) -> None:
    from medviz_core.wire.codec import pack

    name, _ = recorded

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/replay/{name}?speed=8", max_size=None) as ws:
            await ws.send(pack("analyze", request_fields))
            await ws.send(encode_analyze(good))
            return await until_done(ws, good)

    good = AnalyzeRequest("agreement", 1, boxes=AGREE.boxes)
    data = run(scenario())
    errors = [f for f in map(frames.decode, data) if isinstance(f, frames.ErrorFrame)]
    assert errors == [frames.ErrorFrame("bad_request", message)]
    assert analyses(data, good)[-1].status == "done"


def test_a_watcher_can_ask_and_a_two_image_session_gets_one_gradient_map_per_image(
    live: LiveServer, cxr_dir: Any
) -> None:
    pa = (cxr_dir / "nih_00000001_000.png").read_bytes()
    lateral = (cxr_dir / "nih_00027426_000_512.png").read_bytes()

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with connect(f"{live.ws}/ws/session", max_size=None) as owner:
            await owner.send(start_bytes(pa, max_new_tokens=5, images=(pa, lateral), labels=("PA", "lateral")))
            first = await recv(owner)
            await recv(owner)  # step 0
            async with connect(f"{live.ws}/ws/watch/{session_of(first)}", max_size=None) as watcher:
                await watcher.send(encode_analyze(AnalyzeRequest("gradient", 0)))
                await watcher.send(encode_analyze(AnalyzeRequest("faithfulness", 0, method="raw", steps=2)))
                seen = await receive_all(watcher)
            return seen, await receive_all(owner)

    seen, owner = run(scenario())
    done = [f for f in analyses(seen) if f.status == "done"]
    gradient = [f for f in done if isinstance(f.result, GradientResult)]
    faithfulness = [f for f in done if f.kind == "faithfulness"]
    assert len(done) == 2 and len(gradient) == 1 and len(gradient[0].result.maps) == 2
    assert len(faithfulness) == 1  # on the first image, the lateral unchanged
    assert [f for f in map(frames.decode, seen) if isinstance(f, frames.ErrorFrame)] == []
    assert analyses(owner) == []  # answers go to the asking socket only


def test_a_stay_watcher_can_ask_about_a_finished_unrecorded_session(live: LiveServer, sample_bytes: bytes) -> None:
    data = run(session(live, sample_bytes, max_new_tokens=3))
    request = AnalyzeRequest("gradient", 2)

    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/watch/{session_of(data[0])}?stay=1", max_size=None) as ws:
            await ws.send(encode_analyze(request))
            return await until_done(ws, request)

    got = run(scenario())
    assert [d for d in got if frames.decode(d).type != "analysis"] == data
    assert [f.status for f in analyses(got, request)] == ["queued", "running", "done"]


class ListLine:
    """The worker's task line as a list: tasks run when the test says."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, Any]] = []

    def check_room(self, owner: str) -> None:
        del owner

    def run_task(self, owner: str, run: Any, source: str, preempt: Any, between_steps: Any) -> Any:
        self.tasks.append((owner, run))
        return self.tasks[-1]

    def requeue_task(self, task: Any) -> None:
        self.tasks.insert(0, task)

    def drop_task(self, task: Any) -> None:
        self.tasks.remove(task)


def test_a_request_after_its_job_lost_every_asker_starts_a_new_job(live: LiveServer, recorded: tuple[str, list[bytes]]) -> None:
    from medviz_core.analyses.compute import recording_source
    from medviz_core.recording.file import read_recording
    from server.analysis_jobs import AnalysisJobs

    name, _ = recorded
    path = live.settings.recordings / f"{name}.medviz"
    source = recording_source(name, path, read_recording(path))
    line = ListLine()
    jobs = AnalysisJobs(engine=None, line=line)
    heard: dict[str, list[tuple[str, bool]]] = {"gone": [], "new": []}

    def listener(who: str) -> Any:
        return lambda frame, final: heard[who].append((frame.status, final))

    gone, new = listener("gone"), listener("new")
    request = AnalyzeRequest("agreement", 1, boxes=(BoxRequest("apex", (100, 100, 300, 200), 0),))
    jobs.request(source, request, gone, "socket-a")
    jobs.withdraw(source.key, job_id(request), gone)
    assert line.tasks == []  # the withdrawn job gave its place in the line back
    jobs.request(source, request, new, "socket-b")
    for _, task in line.tasks:
        task()
    assert heard == {"gone": [("queued", False)], "new": [("queued", False), ("running", False), ("done", True)]}
    assert jobs.runs == 1


def test_a_socket_that_asks_again_before_the_first_answer_went_out_still_waits() -> None:
    from server.sockets.live import Outbox

    async def scenario() -> None:
        outbox = Outbox(asyncio.get_running_loop())
        first = outbox.expect("session:s", "gradient-1-x", "a")
        second = outbox.expect("session:s", "gradient-1-x", "b")
        assert first is second
        first(AnalysisFrame("gradient-1-x", "gradient", 1, "done"), True)
        await asyncio.sleep(0.01)
        outbox.answered("gradient-1-x")
        assert "gradient-1-x" in outbox.pending and not outbox.idle.is_set()
        first(AnalysisFrame("gradient-1-x", "gradient", 1, "done"), True)
        await asyncio.sleep(0.01)
        outbox.answered("gradient-1-x")
        assert outbox.pending == {} and outbox.idle.is_set()

    asyncio.run(scenario())


def test_each_of_a_sockets_requests_for_one_job_gets_its_own_id_in_the_answers() -> None:
    from server.sockets.live import Outbox

    async def scenario() -> list[tuple[str | None, str, bool]]:
        outbox = Outbox(asyncio.get_running_loop())
        reply = outbox.expect("session:s", "gradient-1-x", "a")
        outbox.expect("session:s", "gradient-1-x", "b")
        reply(AnalysisFrame("gradient-1-x", "gradient", 1, "running"), False)
        reply(AnalysisFrame("gradient-1-x", "gradient", 1, "done"), True)
        reply(AnalysisFrame("gradient-1-x", "gradient", 1, "done"), True)
        await asyncio.sleep(0.01)
        sent = []
        while not outbox.queue.empty():
            data, final, _ = outbox.queue.get_nowait()
            frame = frames.decode(data)
            assert isinstance(frame, AnalysisFrame)
            sent.append((frame.id, frame.status, final))
            if final:
                outbox.answered("gradient-1-x")
        return sent

    assert asyncio.run(scenario()) == [("a", "running", False), ("b", "running", False), ("a", "done", True),
                                       ("b", "done", True)]
