"""Settings without editing code: `medviz serve --set NAME=VALUE` and `--config FILE` set any field of
server/settings.py, type-checked, unknown names refused in one line; recordings default to the per-user
data folder; and a real `medviz serve --set max_watch_sockets=256 --set max_sockets=300` serves one
session to 200 watchers, each of whom gets its end frame (the default cap, 128, would refuse 72)."""

from __future__ import annotations

import asyncio
import functools
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as connect_with

from medviz_core.wire.client_frames import CancelRequest, ParamsRequest, StartRequest
from medviz_core.wire.server_frames import peek_timing
from server.cli.commands import serve_settings
from server.cli.main import build_parser, main
from server.settings import SettingError, Settings, configured, default_recordings
from tests.server.serve_process import link_token, serve_process

WATCHERS = 200


def test_serve_settings_come_from_the_file_then_the_flags_then_each_set(tmp_path: Path) -> None:
    config = tmp_path / "lecture.toml"
    config.write_text('port = 9000\nmax_watch_sockets = 64\nallowed_origins = ["https://hall:443"]\n'
                      'recordings = "/srv/rec"\nlinger_s = 60\n')
    args = build_parser().parse_args(["serve", "--config", str(config), "--port", "9100",
                                      "--set", "max_watch_sockets=256", "--set", "token=none"])
    settings = serve_settings(args)
    assert (settings.port, settings.max_watch_sockets, settings.allowed_origins, settings.recordings,
            settings.linger_s, settings.token) == (9100, 256, ("https://hall:443",), Path("/srv/rec"), 60.0, None)


def test_set_parses_every_kind_of_field_by_its_type() -> None:
    settings = configured(Settings(), None, ["allowed_origins=https://a:443, https://b:443", "redis_url=redis://r/0",
                                             "recordings=/tmp/r", "close_timeout_s=2.5", "queue_cap=0"])
    assert (settings.allowed_origins, settings.redis_url, settings.recordings, settings.close_timeout_s,
            settings.queue_cap) == (("https://a:443", "https://b:443"), "redis://r/0", Path("/tmp/r"), 2.5, 0)


@pytest.mark.parametrize(("given", "message"), [
    (["max_watch_socket=256"],
     "unknown setting 'max_watch_socket' in --set; did you mean max_watch_sockets or max_sockets or "
     "max_replay_sockets?"),
    (["max_sockets=many"], "setting max_sockets in --set: expected an integer; got 'many'"),
    (["max_sockets=1.5"], "setting max_sockets in --set: expected an integer; got '1.5'"),
    (["linger_s=-1"], "setting linger_s in --set: expected a number >= 0; got '-1'"),
    (["max_sockets"], "--set takes NAME=VALUE; got 'max_sockets'"),
])
def test_a_bad_set_is_refused_in_one_line(given: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", *[word for item in given for word in ("--set", item)]]) == 2
    assert capsys.readouterr().err == f"medviz: {message}\n"


def test_a_config_file_value_of_the_wrong_type_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match=r"^setting max_sockets in the config file: expected an integer; got '3'$"):
        configured(Settings(), {"max_sockets": "3"})
    (tmp_path / "bad.toml").write_text("max_sockets = \n")
    with pytest.raises(SettingError, match=r"^the config file '.*bad.toml' is not TOML: "):
        serve_settings(build_parser().parse_args(["serve", "--config", str(tmp_path / "bad.toml")]))


def test_recordings_default_to_the_per_user_data_folder_never_the_working_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert Settings().recordings == default_recordings() == tmp_path / "data" / "medviz" / "recordings"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Settings().recordings == tmp_path / "home" / ".local" / "share" / "medviz" / "recordings"


def test_record_without_out_writes_into_the_data_folder_and_says_where(
        user_data_folder: Path, cxr_dir: Path, capsys: pytest.CaptureFixture[str], tiny_engine: Any) -> None:
    assert main(["record", str(cxr_dir / "nih_00000001_000.png"), "--model", "tiny", "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    written = sorted((user_data_folder / "medviz" / "recordings").glob("recorded-*.medviz"))
    assert len(written) == 1 and f"medviz: recording tiny to {written[0]}\n" in err


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _first_of_kind(ws: ClientConnection, kind: str) -> None:
    async for message in ws:
        assert isinstance(message, bytes)
        if peek_timing(message)[0] == kind:
            return
    raise AssertionError(f"the socket closed before a {kind} frame")


async def _sees_the_end(ws: ClientConnection) -> bool:
    async for message in ws:
        assert isinstance(message, bytes)
        if peek_timing(message)[0] == "end":
            return True
    return False


async def _lecture(port: int, token: str, image: bytes) -> tuple[int, list[bool]]:
    """A blocker holds the model while the lecture's session waits in line and 200 watchers join it; then the
    blocker is cancelled. Returns the viewers the session had while queued (its owner and the watchers) and, per
    watcher, whether its end came. `token`: the one of the link the server printed."""
    base, http = f"ws://127.0.0.1:{port}", httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                                             headers={"Authorization": f"Bearer {token}"})
    connect = functools.partial(connect_with, additional_headers={"Authorization": f"Bearer {token}"})
    async with http, connect(f"{base}/ws/session", max_size=None) as blocker:
        await blocker.send(StartRequest(images=(image,), params=ParamsRequest(max_new_tokens=512)).to_wire())
        await _first_of_kind(blocker, "start")  # it holds the model now
        async with connect(f"{base}/ws/session", max_size=None) as owner:
            await owner.send(StartRequest(images=(image,), params=ParamsRequest(max_new_tokens=3)).to_wire())
            session = ""
            while not session:
                listed = (await http.get("/api/sessions")).json()["sessions"]
                session = next((s["id"] for s in listed if s["state"] == "queued"), "")
            watchers = await asyncio.gather(*(connect(f"{base}/ws/watch/{session}", max_size=None)
                                              for _ in range(WATCHERS)))
            try:
                joined = 0
                for _ in range(200):  # every watcher registered (and the owner), while the session still waits
                    row = next(s for s in (await http.get("/api/sessions")).json()["sessions"] if s["id"] == session)
                    joined = row["watchers"] if row["state"] == "queued" else -1
                    if joined in (WATCHERS + 1, -1):
                        break
                    await asyncio.sleep(0.05)
                await blocker.send(CancelRequest().to_wire())
                ends = await asyncio.wait_for(asyncio.gather(*(_sees_the_end(ws) for ws in watchers)), 120)
            finally:
                await asyncio.gather(*(ws.close() for ws in watchers))
            await _first_of_kind(owner, "end")
    return joined, list(ends)


def test_serve_with_raised_watch_caps_serves_one_session_to_200_watchers(tmp_path: Path, sample_bytes: bytes) -> None:
    options = ["--model", "tiny", "--recordings", str(tmp_path / "recordings"),
               "--set", "max_watch_sockets=256", "--set", "max_sockets=300"]
    with serve_process(options, tmp_path / "serve.log") as (port, line):
        assert _accepts(port)  # said only once it accepts connections
        token = link_token(line)
        assert line.startswith(f"medviz: serving tiny at http://127.0.0.1:{port}/?token={token} (ready ")
        joined, ends = asyncio.run(_lecture(port, token, sample_bytes))
        assert (joined, ends.count(True)) == (1 + WATCHERS, WATCHERS)
