"""The scale-out commands refuse what cannot work, in one line: `medviz worker` and `medviz serve --ray` need Redis."""

from __future__ import annotations

import pytest

from server.cli.main import main


def test_medviz_worker_without_redis_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MEDVIZ_REDIS", raising=False)
    assert main(["worker", "--model", "tiny"]) == 2
    assert capsys.readouterr().err == (
        "medviz: medviz worker needs --redis URL (or MEDVIZ_REDIS): the Redis its web nodes use\n")


def test_medviz_serve_ray_without_redis_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MEDVIZ_REDIS", raising=False)
    assert main(["serve", "--ray", "--model", "tiny"]) == 2
    assert capsys.readouterr().err == (
        "medviz: --ray runs the workers as Ray Serve replicas fed through Redis: pass --redis URL too\n")
