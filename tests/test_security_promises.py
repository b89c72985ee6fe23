"""docs/security.md names the tests that hold its promises: every test it names exists, and every promise names one."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def defined_tests() -> set[str]:
    return {name for path in (REPO / "tests").rglob("test_*.py")
            for name in re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M)}


def promises() -> list[str]:
    text = (REPO / "docs" / "security.md").read_text()
    section = text[text.index("## Promises"):text.index("## Limits")]
    return ["- **" + p for p in section.split("\n- **")[1:]]


def test_every_test_the_promises_name_exists() -> None:
    named = {name for promise in promises() for name in re.findall(r"`(test_\w+)", promise)}
    assert len(named) >= 40
    assert sorted(named - defined_tests()) == []


def test_every_promise_names_a_test_file_that_holds_it() -> None:
    files = [re.findall(r"`(tests/[\w/]+\.py)`", promise) for promise in promises()]
    assert [promise.split("**")[1] for promise, named in zip(promises(), files) if not named] == []
    assert all((REPO / f).is_file() for named in files for f in named)
