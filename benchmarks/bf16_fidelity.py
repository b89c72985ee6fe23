"""How far medviz's bf16 maps are from its fp32 maps, for the same weights, prompt and tokens, in one run.

Builds `random:medgemma-4b?layers=N` in float32 (MedGemma-4B's shapes, random weights, the
real Gemma 3 tokenizer), copies it to bfloat16 (the same weights, rounded), streams the
same image and prompt on both and compares every map of every step while the two runs
chose the same tokens: the largest cell difference as a share of the fp32 map's largest
value, the Pearson correlation, how often the peak cell agrees, and image_mass.

With `--against eager` it measures instead what tests/models/test_medgemma_standin.py checks at a small size:
`random:medgemma-4b?layers=N` in bf16 (the full 896 x 896 SigLIP tower), every map of every streamed step
against docs/relevancy.md's formulas applied to one eager bf16 forward (tests/reference.py), as a share of the
formula map's largest value, beside the test's tolerance (10 units of bf16 roundoff).

Usage: python benchmarks/bf16_fidelity.py [--against fp32|eager] [--layers 6] [--tokens 16] [--device cpu|cuda]
                                          [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.engine.engine import Engine, ModelHandle  # noqa: E402
from medviz_core.models.load import load_engine  # noqa: E402
from medviz_core.types import METHODS  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"


def bf16_twin(engine: Engine) -> Engine:
    import torch

    model = copy.deepcopy(engine.model).to(torch.bfloat16)
    return Engine(ModelHandle(model=model, processor=engine.processor, name=engine.name + " (bf16 copy)"))


def compare(full: list[Any], half: list[Any]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, list[float]]] = {m: {"rel_max": [], "pearson": [], "peak": []} for m in METHODS}
    for a, b in zip(full, half):
        for name in METHODS:
            x, y = a.maps[name].astype(np.float64).ravel(), b.maps[name].astype(np.float64).ravel()
            scale = np.abs(x).max() or 1.0
            rows[name]["rel_max"].append(float(np.abs(x - y).max() / scale))
            rows[name]["pearson"].append(float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 1.0)
            rows[name]["peak"].append(float(np.argmax(x) == np.argmax(y)))
    return {name: {"rel_max_median": statistics.median(v["rel_max"]), "rel_max_max": max(v["rel_max"]),
                   "pearson_min": min(v["pearson"]), "peak_agreement": statistics.mean(v["peak"])}
            for name, v in rows.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", choices=["fp32", "eager"], default="fp32")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--question", default="Is there a nodule?")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.against == "eager":
        return against_eager(args)
    full = load_engine(f"random:medgemma-4b?layers={args.layers}&dtype=float32&device={args.device}")
    half = bf16_twin(full)
    image = Path(args.image).read_bytes()
    steps = {}
    for label, engine in (("fp32", full), ("bf16", half)):
        steps[label] = list(engine.stream(image, question=args.question, max_new_tokens=args.tokens))
    same = 0
    while same < min(len(steps["fp32"]), len(steps["bf16"])) and \
            steps["fp32"][same].token_id == steps["bf16"][same].token_id:
        same += 1
    result = compare(steps["fp32"][:same], steps["bf16"][:same])
    masses = [abs(a.image_mass - b.image_mass) for a, b in zip(steps["fp32"][:same], steps["bf16"][:same])]
    print(f"random:medgemma-4b?layers={args.layers} on {args.device}: bf16 copy vs fp32, {same} of "
          f"{args.tokens} tokens identical (compared)")
    print(f"{'method':16} {'max |bf16-fp32| / max fp32':>28} {'(median)':>9} {'min Pearson r':>14} {'same peak':>10}")
    for name, row in result.items():
        print(f"{name:16} {row['rel_max_max']:28.4f} {row['rel_max_median']:9.4f} {row['pearson_min']:14.5f} "
              f"{row['peak_agreement']:10.2f}")
    print(f"image_mass: largest difference {max(masses):.5f} (mean over steps {statistics.mean(masses):.5f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"layers": args.layers, "device": args.device, "compared": same,
                                               "methods": result, "image_mass_max_diff": max(masses)}, indent=2))
    return 0


def against_eager(args: argparse.Namespace) -> int:
    from tests.models.test_medgemma_standin import BF16_MASS_TOLERANCE, BF16_TOLERANCE, bf16_errors

    ref = f"random:medgemma-4b?layers={args.layers}&dtype=bfloat16&device={args.device}"
    engine = load_engine(ref)
    errors, mass_error = bf16_errors(engine, Path(args.image).read_bytes(), args.question, args.tokens)
    steps = len(errors["raw"])
    print(f"{ref}: {steps} streamed steps vs one eager bf16 forward (docs/relevancy.md's formulas, tests/reference.py)")
    print(f"{'method':16} {'max |map-eager| / max eager':>28} {'(median)':>9} {'tolerance':>10}")
    for name in METHODS:
        print(f"{name:16} {max(errors[name]):28.4f} {statistics.median(errors[name]):9.4f} {BF16_TOLERANCE:10.4f}")
    print(f"image_mass: largest difference {mass_error:.5f} (tolerance {BF16_MASS_TOLERANCE})")
    if args.json:
        Path(args.json).write_text(json.dumps({"ref": ref, "steps": steps, "against": "eager",
                                               "rel_max": {n: max(e) for n, e in errors.items()},
                                               "image_mass_max_diff": mass_error,
                                               "tolerance": BF16_TOLERANCE}, indent=2))
    within = all(max(e) <= BF16_TOLERANCE for e in errors.values()) and mass_error <= BF16_MASS_TOLERANCE
    return 0 if within else 1


if __name__ == "__main__":
    raise SystemExit(main())
