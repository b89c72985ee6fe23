"""Cost of the on-demand analyses per token, measured in one run on one model and prompt.

Prints a table and JSON: gradient relevancy (one forward + backward), the layer x head
view (one captured forward), one scorer call (a faithfulness curve makes steps + 1 of
them), next to the streamed decode step's time for scale.

Usage: python benchmarks/analysis_bench.py [--model demo] [--tokens 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.analyses.gradient import gradient_relevancy, layer_head_view, token_context, token_scorer  # noqa: E402
from medviz_core.imaging.load import load_image  # noqa: E402
from medviz_core.models.load import load_engine  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    engine = load_engine(args.model)
    image = Path(args.image).read_bytes()
    steps = list(engine.stream(image, max_new_tokens=args.tokens))
    index = len(steps) - 1
    context = token_context(engine, image, None, [s.token_id for s in steps], index)
    scorer = token_scorer(engine, context, None)
    rgb = load_image(image)
    report = {
        "model": engine.facts.name, "device": engine.facts.device, "token_index": index,
        "sequence_tokens": len(context.inputs["input_ids"][0]) + index,
        "decode_step_ms": statistics.median(s.model_ms for s in steps[1:]) if len(steps) > 1 else None,
        "gradient_relevancy_ms": median_ms(lambda: gradient_relevancy(engine, context), args.repeats),
        "layer_head_view_ms": median_ms(lambda: layer_head_view(engine, context), args.repeats),
        "scorer_call_ms": median_ms(lambda: scorer(rgb), args.repeats),
    }
    print(f"model {report['model']} on {report['device']}, token {index} of a "
          f"{report['sequence_tokens']}-token sequence")
    for key in ("decode_step_ms", "gradient_relevancy_ms", "layer_head_view_ms", "scorer_call_ms"):
        print(f"{key:24} {report[key]:10.1f}")
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
