"""Peak resident memory of this process (the background server runs in it), read from /proc."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

GB = 1024 ** 3


def _status_kb(field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert found is not None, f"/proc/self/status has no {field}"
    return int(found.group(1))


@contextlib.contextmanager
def peak_growth() -> Iterator[list[int]]:
    """Yields a list that holds, after the block, the peak RSS growth in bytes during the block
    (the kernel's high-water mark, reset at the start via /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    out: list[int] = []
    yield out
    out.append((_status_kb("VmHWM") - before) * 1024)
