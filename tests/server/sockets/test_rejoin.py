"""An owner's page that reloads takes its live session back with its owner key (sessions.rejoin):
the key comes once, to the owner's socket only; a page going away (1001) leaves the session
running for owner_grace_s; a rejoin gets the whole log, Stop still works; a wrong key or a
grace period past gets one clear error frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from medviz_core.errors import RequestError
from medviz_core.recording.file import read_recording
from medviz_core.wire import server_frames as frames
from medviz_core.wire.client_frames import RejoinRequest, parse_client_frame
from medviz_core.wire.limits import ClientLimits
from server.settings import Settings
from tests.server.engines import GATED, GatedEngine
from tests.server.helpers import LiveServer, kinds, receive_all, recv, refused, run, serve, start_bytes, until
from tests.wire_client import encode_command

GOING_AWAY = 1001  # what a browser's page closes its sockets with when it unloads (a reload too)


async def _reload_mid_session(server: LiveServer, engine: GatedEngine, image: bytes
                              ) -> tuple[frames.OwnerFrame, list[bytes], list[bytes]]:
    """Start with ?rejoin=1, read start and steps 0..2 (the run waits at the gate before step 3), close as a
    page unloading does and wait until the server saw it. -> the owner frame, what the first socket
    got, and what a watcher got first."""
    connections = server.app.state.connections
    async with connect(f"{server.ws}/ws/session?rejoin=1", max_size=None) as page:
        await page.send(start_bytes(image, max_new_tokens=8, question=GATED, record=True))
        owner = frames.decode(await recv(page))
        assert isinstance(owner, frames.OwnerFrame)
        got = [await recv(page) for _ in range(4)]
        async with connect(f"{server.ws}/ws/watch/{owner.session}", max_size=None) as watcher:
            watched = [await recv(watcher) for _ in range(4)]
        await page.close(GOING_AWAY)
    await until(lambda: connections.open["session"] == 0, "the server saw the page go")
    return owner, got, watched


def test_an_owner_that_reloads_rejoins_with_its_key_and_gets_every_token(tiny_engine: Any, tmp_path: Path,
                                                                          sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=3)
    with serve(Settings(model="tiny", recordings=tmp_path, owner_grace_s=30), engine) as server:

        async def scenario() -> tuple[frames.OwnerFrame, list[bytes], list[bytes], frames.Frame, list[bytes]]:
            owner, got, watched = await _reload_mid_session(server, engine, sample_bytes)
            async with connect(f"{server.ws}/ws/session", max_size=None) as page:
                await page.send(RejoinRequest(owner.session, owner.key).to_wire())
                again = frames.decode(await recv(page))
                engine.gate.set()
                return owner, got, watched, again, await receive_all(page)

        owner, got, watched, again, rest = run(scenario())
    end = frames.decode(rest[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.tokens) == ("max_tokens", 8)
    assert kinds(rest) == ["start", *["step"] * 8, "end"] and rest[:4] == got
    assert again == owner and len(owner.key) == 43 and owner.grace_s == 30.0
    assert frames.decode(got[0]).session == owner.session  # type: ignore[union-attr]
    assert watched == got  # a watcher never gets the owner frame
    recording = read_recording(tmp_path / f"{owner.session}.medviz")
    assert [f.data for f in recording.frames] == rest  # nor does the recording
    assert owner.key.encode() not in (tmp_path / f"{owner.session}.medviz").read_bytes()


def test_an_owner_whose_old_socket_saw_the_end_while_its_page_was_cut_off_rejoins_and_gets_the_whole_log(
        tiny_engine: Any, tmp_path: Path, sample_bytes: bytes) -> None:
    # A lost link: the page is gone but the server's side of its socket stays open and takes the end frame (into
    # the void), then closes normally; the page comes back after that and must still get its report.
    with serve(Settings(model="tiny", recordings=tmp_path, owner_grace_s=30), tiny_engine) as server:

        async def scenario() -> tuple[frames.OwnerFrame, list[bytes], list[bytes]]:
            async with connect(f"{server.ws}/ws/session?rejoin=1", max_size=None) as old:
                await old.send(start_bytes(sample_bytes, max_new_tokens=6, record=True))
                owner = frames.decode(await recv(old))
                assert isinstance(owner, frames.OwnerFrame)
                seen = await receive_all(old)  # to the end: the server closes it after the end frame
            async with connect(f"{server.ws}/ws/session", max_size=None) as page:
                await page.send(RejoinRequest(owner.session, owner.key).to_wire())
                return owner, seen, [await recv(page), *await receive_all(page)]

        owner, seen, rest = run(scenario())
    assert frames.decode(rest[0]) == owner and rest[1:] == seen
    assert kinds(seen) == ["start", *["step"] * 6, "end"]


def test_stop_works_after_a_rejoin(tiny_engine: Any, tmp_path: Path, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=3)
    with serve(Settings(model="tiny", recordings=tmp_path, owner_grace_s=30), engine) as server:

        async def scenario() -> list[bytes]:
            owner, _, _ = await _reload_mid_session(server, engine, sample_bytes)
            async with connect(f"{server.ws}/ws/session", max_size=None) as page:
                await page.send(RejoinRequest(owner.session, owner.key).to_wire())
                await recv(page)
                await page.send(encode_command("cancel"))
                engine.gate.set()
                return await receive_all(page)

        rest = run(scenario())
    end = frames.decode(rest[-1])
    assert isinstance(end, frames.EndFrame) and (end.reason, end.tokens) == ("cancelled", 4)  # step 3 was made before the gate


def test_a_wrong_key_or_an_unknown_session_gets_one_clear_error_frame(tiny_engine: Any, tmp_path: Path,
                                                                      sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=3)
    with serve(Settings(model="tiny", recordings=tmp_path, owner_grace_s=30), engine) as server:

        async def scenario() -> list[tuple[Any, int | None, str]]:
            owner, _, _ = await _reload_mid_session(server, engine, sample_bytes)
            wrong = await refused(f"{server.ws}/ws/session", RejoinRequest(owner.session, "x" * 43).to_wire())
            unknown = await refused(f"{server.ws}/ws/session", RejoinRequest("nope", owner.key).to_wire())
            engine.gate.set()
            return [wrong, unknown]

        (wrong, wrong_code, _), (unknown, unknown_code, _) = run(scenario())
    assert isinstance(wrong, frames.ErrorFrame) and wrong.code == "not_found" and wrong_code == 4404
    assert wrong.message.endswith("as its owner: the owner key does not match; start a new session")
    assert isinstance(unknown, frames.ErrorFrame) and unknown_code == 4404
    assert unknown.message == ("cannot rejoin session 'nope' as its owner: it does not exist or has expired; "
                               "start a new session")


def test_a_page_that_does_not_come_back_within_the_grace_period_ends_its_session(
        tiny_engine: Any, tmp_path: Path, sample_bytes: bytes) -> None:
    engine = GatedEngine(tiny_engine, hold_at=3)
    with serve(Settings(model="tiny", recordings=tmp_path, owner_grace_s=0.3), engine) as server:
        manager = server.app.state.sessions

        async def scenario() -> tuple[Any, int | None, str]:
            owner, _, _ = await _reload_mid_session(server, engine, sample_bytes)
            await until(lambda: manager._sessions[owner.session].job.cancel.is_set(), "the session stopped")
            engine.gate.set()
            await until(lambda: manager.sessions()[0].state == "finished", "the session ended")
            return await refused(f"{server.ws}/ws/session", RejoinRequest(owner.session, owner.key).to_wire())

        late, code, _ = run(scenario())
        (info,) = manager.sessions()
    recording = read_recording(tmp_path / f"{info.id}.medviz")
    assert recording.end is not None and recording.end.reason == "cancelled"
    assert isinstance(late, frames.ErrorFrame) and code == 4404
    assert late.message.endswith("as its owner: its owner left and did not come back within 0.3 s; start a new "
                                 "session")


def test_without_rejoin_the_owner_gets_no_key_and_a_rejoin_is_a_checked_frame(live: LiveServer,
                                                                                sample_bytes: bytes) -> None:
    async def scenario() -> list[bytes]:
        async with connect(f"{live.ws}/ws/session", max_size=None) as page:
            await page.send(start_bytes(sample_bytes, max_new_tokens=2))
            return await receive_all(page)

    assert kinds(run(scenario())) == ["start", "step", "step", "end"]
    limits = ClientLimits()
    assert parse_client_frame(RejoinRequest("abc", "k" * 43).to_wire(), limits) == RejoinRequest("abc", "k" * 43)
    with pytest.raises(RequestError, match=r"must be 1\.\.128 characters; got 3 and 129"):
        parse_client_frame(RejoinRequest("abc", "k" * 129).to_wire(), limits)
