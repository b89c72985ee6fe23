"""Torch operations dispatched by one decode step: plain decode vs stream() with every method, in one run.

On a large GPU at batch 1 an eager decode step is bound by the host issuing operations, so
the number of non-view aten operations a step dispatches predicts its cost there. This
counts them with a `TorchDispatchMode` for
- plain: one decode forward with SDPA (no capture, no attentions) + argmax, as
  `generate(do_sample=False)` does per token;
- stream: one decode step of `engine.stream()` with all six methods (forward with the
  capture, the maps and statistics' torch part, the token choice);
and prints both, the ratio, and for stream the operations per kind.

Usage: python benchmarks/ops_per_step.py [--model demo] [--model random:medgemma-4b?layers=34] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.models.load import load_engine  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"


class CountOps(TorchDispatchMode):
    """Tallies every non-view aten operation dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not func.is_view:
            self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def stream_step_ops(engine: Any, image: bytes, question: str | None) -> CountOps:
    """Operations of the third streamed step (the second decode step: caches are warm)."""
    run = engine.stream(image, question=question, max_new_tokens=4)
    next(run), next(run)
    with CountOps() as counter:
        next(run)
    run.close()
    return counter


def plain_step_ops(engine: Any, image: bytes, question: str | None) -> CountOps:
    """Operations of one SDPA decode forward + argmax after a prefill and one decode step."""
    model = engine.model
    previous = model.config.get_text_config()._attn_implementation
    model.set_attn_implementation({"text_config": "sdpa", "vision_config": "sdpa"})
    try:
        inputs = engine.inputs_for(image, question)
        cache_kwarg = engine.cache_argument
        with torch.inference_mode():
            out = model(**inputs, use_cache=True, logits_to_keep=1)
            ids = inputs["input_ids"]
            for step in range(2):
                token = out.logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, token], dim=1)
                kwargs = {"input_ids": token, "attention_mask": torch.ones_like(ids),
                          cache_kwarg: getattr(out, "cache", None) or out.past_key_values}
                if step == 1:
                    with CountOps() as counter:
                        out = model(**kwargs, use_cache=True, logits_to_keep=1)
                        out.logits[:, -1].argmax(-1)
                else:
                    out = model(**kwargs, use_cache=True, logits_to_keep=1)
    finally:
        model.set_attn_implementation({"text_config": previous, "vision_config": "sdpa"})
    return counter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None,
                        help="model refs (repeatable); default: demo and random:medgemma-4b?layers=34&dtype=bfloat16 "
                        "(bf16 to fit 24 GB; counts do not depend on the dtype but for one cast)")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--question", default="Is there a nodule?")
    parser.add_argument("--top", type=int, default=12, help="stream's most frequent operations to list")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    refs = args.model or ["demo", "random:medgemma-4b?layers=34&dtype=bfloat16&device=cpu"]
    image = Path(args.image).read_bytes()
    results = []
    print(f"{'model':48} {'plain':>7} {'stream':>7} {'ratio':>7}")
    for ref in refs:
        engine = load_engine(ref)
        plain = plain_step_ops(engine, image, args.question)
        stream = stream_step_ops(engine, image, args.question)
        ratio = stream.total / plain.total
        print(f"{ref:48} {plain.total:7d} {stream.total:7d} {ratio:7.3f}")
        extra = stream.counts - plain.counts
        kinds = ", ".join(f"{name} {n}" for name, n in extra.most_common(args.top))
        print(f"  stream's extra operations by kind: {kinds}")
        results.append({"model": ref, "layers": engine.facts.layers, "plain": plain.total, "stream": stream.total,
                        "ratio": ratio, "extra_by_kind": dict(extra)})
        del engine
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
