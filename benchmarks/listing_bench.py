"""What a recordings listing costs: every frame decoded (the listing before), only the start and end
frames decoded (recording.recording_info), each recording's summary sidecar read
(recording.summary.listing_info: what a server's listing reads first), and rows kept in memory
(server/recordings.Summaries).

Writes `--recordings` files of `--steps` step frames each (the golden fixtures' frames) into a
temporary folder, then times a whole listing each way (median of `--rounds`) and prints the
times and their ratios to the full decode. Speed lives here, never in tests.

Usage: python benchmarks/listing_bench.py [--recordings 40] [--steps 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.recording.file import RecordingWriter, iter_frames, list_recordings  # noqa: E402
from medviz_core.recording.summary import listing_info, summarize  # noqa: E402
from server.recordings import Summaries  # noqa: E402
from tests.fixtures.frames import make_fixtures  # noqa: E402


def decode_all(path: Path) -> int:
    """The listing before: every frame of the file decoded."""
    return sum(1 for _ in iter_frames(path))


def timed(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    frames = make_fixtures.build()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for n in range(args.recordings):
            with RecordingWriter(root / f"rec{n}.medviz") as writer:
                writer.write(frames["start"])
                for _ in range(args.steps):
                    writer.write(frames["step"])
                writer.write(frames["end"])
        paths = sorted(root.glob("*.medviz"))
        full = timed(lambda: [decode_all(p) for p in paths], args.rounds)
        lean = timed(lambda: list_recordings(root), args.rounds)
        for path in paths:
            summarize(path)
        sidecar = timed(lambda: list_recordings(root, listing_info), args.rounds)
        cache = Summaries()
        list_recordings(root, cache.info)
        kept = timed(lambda: list_recordings(root, cache.info), args.rounds)
    print(f"{args.recordings} recordings x {args.steps} steps, median of {args.rounds}:")
    for name, seconds in (("every frame decoded", full), ("start and end decoded", lean),
                          ("summary sidecars read", sidecar), ("rows kept", kept)):
        print(f"  {name:24s} {seconds * 1000:9.1f} ms  {seconds / full:6.3f} of the full decode")


if __name__ == "__main__":
    main()
