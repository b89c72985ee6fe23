"""Where a step's maps are computed, measured side by side in ONE run: inline, on a thread, or in a process.

`Engine.finisher` (run._Finisher, maps/host_maps.py) decides where the host turns each step's reduced
rows into maps, statistics, regions and context: "inline" after the step, "thread" on a worker
thread while the model runs the next step, "process" in the engine's maps process likewise.
When the thread issuing the model's operations is busy the whole step (an eager step on a GPU;
a small model on one CPU thread), a thread shares its interpreter lock and cannot overlap with
it; a process can. Prints the decode rate (tokens after the first over the time after the
prefill, median of interleaved rounds) of each and its ratio to inline.

Usage: python benchmarks/finisher_bench.py [--model tiny] [--tokens 64] [--rounds 3] [--threads 1] [--json out.json]
Speed lives here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.models.load import load_engine  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"
MODES = ("inline", "thread", "process")


def decode_rate(engine: Any, image: bytes, tokens: int) -> float:
    run = engine.stream(image, max_new_tokens=tokens)
    steps = list(run)
    end = run.end
    return (len(steps) - 1) / (max(end.total_ms - end.prefill_ms, 1e-9) / 1000.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: torch's default)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = load_engine(args.model)
    image = Path(args.image).read_bytes()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        for mode in MODES:  # warm-up: first-run costs (and the maps process's start) out of the comparison
            engine.finisher = mode
            decode_rate(engine, image, 4)
        for _ in range(args.rounds):
            for mode in MODES:
                engine.finisher = mode
                rates[mode].append(decode_rate(engine, image, args.tokens))
    finally:
        engine.close()
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    report = {"benchmark": "finisher", "model": args.model, "device": str(engine.device), "tokens": args.tokens,
              "torch_threads": torch.get_num_threads(), "tokens_per_s": rates,
              "median_tokens_per_s": medians, "ratio_to_inline": {m: medians[m] / medians["inline"] for m in MODES}}
    print(f"model {args.model} on {engine.device}, {args.tokens} tokens, torch threads {torch.get_num_threads()}, "
          f"engine default {'process' if engine.device.type == 'cuda' else 'inline'}")
    print(f"{'finisher':10} {'tokens/s (rounds)':>28} {'median':>8} {'x inline':>9}")
    for mode in MODES:
        rounds = " ".join(f"{rate:.1f}" for rate in rates[mode])
        print(f"{mode:10} {rounds:>28} {medians[mode]:8.1f} {report['ratio_to_inline'][mode]:9.3f}")
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
