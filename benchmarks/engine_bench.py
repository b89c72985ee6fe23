"""Engine speed, measured side by side in ONE run on the same model, prompt and token count.

Prints a table and JSON:
1. tokens/s (median of the interleaved rounds) of `stream()` with all methods, plain `generate` (SDPA, no attentions),
   `generate(output_attentions=True)` (eager) and post-hoc (generate, then one eager
   forward with attentions and the maps for every token, as the original visualizer did),
   each as a ratio to plain generate; with --compile also compiled plain decode and compiled
   stream (engine/compiled.py: static cache, torch.compile) and their compile times;
2. time to first token (prefill + choice) vs time to first heatmap (first Step);
3. per-step map cost vs context length (capture + maps for one decode row at 256..4096
   tokens of context, with the model's layer/head shapes), to show linear growth;
4. the rollout state's size (L * T * N floats) and the peak memory of stream() over plain
   generate: on CUDA torch's peak allocation; on a CPU the peak growth of the resident set,
   each path in a fresh process of its own after a warm-up (sampled every millisecond);
5. the step frame each token becomes (bytes, mean and max, and encoding time). Token-to-viewer
   latency and fan-out to many viewers: benchmarks/fanout.py.

Usage: python benchmarks/engine_bench.py [--model demo] [--tokens 48] [--rounds 3] [--compile] [--json out.json]
Speed lives here, never in tests: machines are shared and noisy, so compare ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medviz_core.engine.capture import Capture  # noqa: E402
from medviz_core.engine.kv_cache import BufferCache  # noqa: E402
from medviz_core.maps.relevancy import compute_maps  # noqa: E402
from medviz_core.models.load import load_engine  # noqa: E402
from medviz_core.types import METHODS  # noqa: E402
from medviz_core.wire.server_frames import StepFrame  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "cxr" / "nih_00000001_000.png"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def run_stream(engine: Any, image: bytes, question: str | None, tokens: int) -> dict[str, float]:
    """Time the generation itself: image decoding and the processor run before the clock starts,
    as they do for `generate`, and are reported apart."""
    tick = time.perf_counter()
    run = engine.stream(image, question=question, max_new_tokens=tokens)
    prepare_ms = (time.perf_counter() - tick) * 1000
    start = time.perf_counter()
    first_step = None
    first_model_ms = 0.0
    count = 0
    maps_ms = 0.0
    steps = []
    for step in run:
        if first_step is None:
            first_step = time.perf_counter() - start
            first_model_ms = step.model_ms
        count += 1
        maps_ms += step.maps_ms
        steps.append(step)
    sync(engine.device)
    total = time.perf_counter() - start
    tick = time.perf_counter()
    sizes = [len(StepFrame.of_step(step, 0.0).to_wire()) for step in steps]  # what the server sends per token
    encode_ms = (time.perf_counter() - tick) * 1000 / max(len(steps), 1)
    return {
        "step_frame_bytes_mean": sum(sizes) / max(len(sizes), 1),
        "step_frame_bytes_max": max(sizes, default=0),
        "step_frame_encode_ms": encode_ms,
        "seconds": total,
        "tokens": count,
        "first_heatmap_ms": (first_step or 0.0) * 1000,
        "first_token_ms": first_model_ms,
        "prepare_ms": prepare_ms,
        "maps_ms_per_step": maps_ms / max(count, 1),
    }


def run_generate(engine: Any, inputs: Any, tokens: int, attention: str, with_attentions: bool) -> tuple[float, Any]:
    model = engine.model
    previous = model.config.get_text_config()._attn_implementation
    model.set_attn_implementation(attention)
    try:
        with torch.inference_mode():
            return timed(
                lambda: model.generate(
                    **inputs,
                    max_new_tokens=tokens,
                    min_new_tokens=tokens,
                    do_sample=False,
                    output_attentions=with_attentions,
                    return_dict_in_generate=True,
                ),
                engine.device,
            )
    finally:
        model.set_attn_implementation(previous)


def run_compiled_plain(engine: Any, inputs: Any, tokens: int, decoder: Any) -> float:
    """Greedy generation through the compiled decode step without the capture: an eager prefill into the
    decoder's static cache, then `tokens - 1` compiled steps (the baseline for the compiled stream)."""
    positions = (inputs["input_ids"][0] == engine.image_token_id).nonzero().flatten()
    decoder.reset()
    prompt_len = int(inputs["input_ids"].shape[1])

    def generate() -> None:
        with torch.inference_mode():
            out = engine.model(**inputs, use_cache=True, logits_to_keep=1, **{engine.cache_argument: decoder.cache})
            token = int(out.logits[0, -1].argmax())
            for index in range(1, tokens):
                logits = decoder.step(token, prompt_len + index - 1, positions).logits
                token = int(logits[0].argmax())

    seconds, _ = timed(generate, engine.device)
    return seconds


def run_post_hoc(engine: Any, inputs: Any, tokens: int) -> float:
    """generate, then one eager forward with attentions, then the maps of every token."""
    seconds, out = run_generate(engine, inputs, tokens, "sdpa", False)
    sequence = out.sequences
    model = engine.model
    previous = model.config.get_text_config()._attn_implementation
    model.set_attn_implementation("eager")
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            types = torch.zeros_like(sequence)
            types[:, : inputs["token_type_ids"].shape[1]] = inputs["token_type_ids"]
            attn = model(
                input_ids=sequence, pixel_values=inputs["pixel_values"], token_type_ids=types,
                attention_mask=torch.ones_like(sequence), output_attentions=True, use_cache=False,
            ).attentions
            image = (inputs["input_ids"][0] == engine.image_token_id).nonzero().flatten()
            size = sequence.shape[1]
            rollout = torch.eye(size, device=engine.device)
            for layer in attn:
                rollout = (0.5 * layer[0].float().mean(0) + 0.5 * torch.eye(size, device=engine.device)) @ rollout
            prompt_len = inputs["input_ids"].shape[1]
            for q in range(prompt_len - 1, size - 1):
                rows = torch.stack([layer[0, :, q, image].float() for layer in attn])  # [layer, head, image]
                compute_maps(rows.mean(1).cpu().numpy(), rows[-1].cpu().numpy(), rollout[q, image].cpu().numpy(),
                             METHODS)
    finally:
        model.set_attn_implementation(previous)
    sync(engine.device)
    return seconds + time.perf_counter() - start


def map_cost_by_context(engine: Any, contexts: list[int], repeats: int = 20) -> list[dict[str, float]]:
    """Capture (batched, after the forward) + maps for one decode row at each context length, the model's shapes."""
    facts, device = engine.facts, engine.device
    text = engine.model.config.get_text_config()
    head_dim = text.head_dim
    results = []
    for context in contexts:
        n = facts.grid[0] * facts.grid[1]
        cache = BufferCache(text, context + 1)
        for layer in range(facts.layers):  # a filled cache: random keys for every position
            states = torch.randn(1, facts.kv_heads, context + 1, head_dim, device=device, dtype=engine.dtype)
            cache.buffer.write(layer, 0, states, states)
        capture = Capture(layers=facts.layers, heads=facts.heads, image_positions=torch.arange(0, n),
                          max_length=context + 1, rollout=True, device=device, cache=cache)
        query = torch.randn(1, facts.heads, 1, head_dim, device=device, dtype=engine.dtype)

        def one_step(capture: Capture = capture, context: int = context, query: torch.Tensor = query) -> None:
            with capture.forward(context, 1):
                for layer in range(facts.layers):
                    capture.keep(layer, query, head_dim**-0.5, None)
                capture.finish()
            reduced = capture.reduced(context)
            compute_maps(reduced.layer_means, reduced.last_heads, reduced.rollout, METHODS)

        one_step()
        samples = [timed(one_step, device)[0] * 1000 for _ in range(repeats)]
        results.append({"context": context, "maps_ms": statistics.median(samples)})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--question", default=None)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; rates are their medians")
    parser.add_argument("--contexts", default="256,512,1024,2048,4096")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--compile", action="store_true",
                        help="also compiled plain decode and compiled stream (compile time reported)")
    args = parser.parse_args()

    engine = load_engine(args.model)
    engine.eos_ids = frozenset()  # every path generates exactly --tokens tokens
    image = Path(args.image).read_bytes()
    inputs = engine.inputs_for(image, args.question)
    run_stream(engine, image, args.question, 4)  # warm-up
    run_generate(engine, inputs, 4, "sdpa", False)
    compile_seconds: dict[str, float] = {}
    if args.compile:
        from medviz_core.engine.compiled import CompiledDecoder, bucket

        length = bucket(int(inputs["input_ids"].shape[1]) + args.tokens)
        plain_decoder = CompiledDecoder(engine, length, len(engine.layout_of(inputs["input_ids"]).positions),
                                        capture=False)
        tick = time.perf_counter()
        run_compiled_plain(engine, inputs, 2, plain_decoder)  # compiles
        compile_seconds["compiled_plain"] = time.perf_counter() - tick
        engine.compile = True
        tick = time.perf_counter()
        run_stream(engine, image, args.question, 2)  # compiles
        compile_seconds["compiled_stream"] = time.perf_counter() - tick
        engine.compile = False

    samples: dict[str, list[float]] = {}
    stream_detail: dict[str, float] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds)

    for _ in range(args.rounds):
        detail = run_stream(engine, image, args.question, args.tokens)
        add("stream", detail["seconds"])
        if detail["seconds"] <= min(samples["stream"]):
            stream_detail = detail
        for name, attention, with_attn in (("plain", "sdpa", False), ("eager_attentions", "eager", True)):
            add(name, run_generate(engine, inputs, args.tokens, attention, with_attn)[0])
        add("post_hoc", run_post_hoc(engine, inputs, args.tokens))
        if args.compile:
            add("compiled_plain", run_compiled_plain(engine, inputs, args.tokens, plain_decoder))
            engine.compile = True
            add("compiled_stream", run_stream(engine, image, args.question, args.tokens)["seconds"])
            engine.compile = False
    best = {name: statistics.median(values) for name, values in samples.items()}  # the median of the rounds

    tokens = args.tokens
    rates = {name: tokens / seconds for name, seconds in best.items()}
    contexts = [int(c) for c in args.contexts.split(",")]
    facts = engine.facts
    n = facts.grid[0] * facts.grid[1]
    prompt_len = int(inputs["input_ids"].shape[1])
    report = {
        "model": facts.name, "device": facts.device, "dtype": facts.dtype, "torch": torch.__version__,
        "prompt_tokens": prompt_len, "new_tokens": tokens,
        "tokens_per_s": rates,
        "ratio_to_plain": {name: rate / rates["plain"] for name, rate in rates.items()},
        "rounds_seconds": samples,
        "compiled_stream_to_compiled_plain": (rates["compiled_stream"] / rates["compiled_plain"]
                                              if "compiled_stream" in rates else None),
        "compile_seconds": compile_seconds,
        "prepare_ms": stream_detail["prepare_ms"],
        "first_token_ms": stream_detail["first_token_ms"],
        "first_heatmap_ms": stream_detail["first_heatmap_ms"],
        "maps_ms_per_step": stream_detail["maps_ms_per_step"],
        "step_frame_bytes_mean": stream_detail["step_frame_bytes_mean"],
        "step_frame_bytes_max": stream_detail["step_frame_bytes_max"],
        "step_frame_encode_ms": stream_detail["step_frame_encode_ms"],
        "map_cost_by_context": map_cost_by_context(engine, contexts),
        "rollout_state_bytes": (facts.layers + 1) * (prompt_len + tokens) * n * 4,
    }
    if engine.device.type == "cuda":
        report["peak_memory"] = peak_memory(engine, image, inputs, args.question, tokens)
    else:
        report["peak_memory"] = peak_rss_growth(args.model, args.image, args.question, tokens)
    print_table(report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


def peak_memory(engine: Any, image: bytes, inputs: Any, question: str | None, tokens: int) -> dict[str, int]:
    torch.cuda.reset_peak_memory_stats()
    run_generate(engine, inputs, tokens, "sdpa", False)
    plain = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run_stream(engine, image, question, tokens)
    return {"plain_bytes": plain, "stream_bytes": torch.cuda.max_memory_allocated(),
            "extra_bytes": torch.cuda.max_memory_allocated() - plain}


def peak_rss_growth(model: str, image: str, question: str | None, tokens: int) -> dict[str, int]:
    """CPU: each path in a fresh spawned process; the peak resident-set growth over its warm start."""
    import multiprocessing
    import os
    from unittest import mock

    context = multiprocessing.get_context("spawn")
    found: dict[str, int] = {}
    # A fixed mmap threshold: glibc otherwise raises it after the warm-up frees its big blocks,
    # keeps them, and the resident set stops following what the run holds.
    with mock.patch.dict(os.environ, {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}):
        for path in ("plain", "stream"):
            results = context.Queue()
            child = context.Process(target=_rss_child, args=(model, image, question, tokens, path, results))
            child.start()
            found[f"{path}_bytes"] = int(results.get(timeout=600))
            child.join(60)
    found["extra_bytes"] = found["stream_bytes"] - found["plain_bytes"]
    return found


def _rss_child(model: str, image_path: str, question: str | None, tokens: int, path: str, results: Any) -> None:
    import os
    import threading

    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page

    engine = load_engine(model)
    engine.eos_ids = frozenset()
    image = Path(image_path).read_bytes()
    inputs = engine.inputs_for(image, question)

    def run() -> None:
        if path == "stream":
            run_stream(engine, image, question, tokens)
        else:
            run_generate(engine, inputs, tokens, "sdpa", False)

    run()  # warm-up: lazy allocations and the allocator's pools, as in a live server
    base = peak = rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run()
    done.set()
    sampler.join()
    results.put(max(peak, rss()) - base)


def print_table(report: dict[str, Any]) -> None:
    print(f"\nmodel {report['model']} on {report['device']} ({report['dtype']}), "
          f"{report['prompt_tokens']} prompt tokens, {report['new_tokens']} new tokens")
    print(f"{'path':28} {'tokens/s':>10} {'x plain':>8}")
    for name, rate in report["tokens_per_s"].items():
        print(f"{name:28} {rate:10.2f} {report['ratio_to_plain'][name]:8.3f}")
    if report.get("compiled_stream_to_compiled_plain"):
        print(f"compiled stream / compiled plain: {report['compiled_stream_to_compiled_plain']:.3f}; compile time "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report["compile_seconds"].items()))
    print(f"image + processor {report['prepare_ms']:.1f} ms (before both); "
          f"first token {report['first_token_ms']:.1f} ms, first heatmap {report['first_heatmap_ms']:.1f} ms, "
          f"maps {report['maps_ms_per_step']:.2f} ms/step")
    print("context  maps ms/step")
    for row in report["map_cost_by_context"]:
        print(f"{row['context']:7d}  {row['maps_ms']:.3f}")
    print(f"step frame {report['step_frame_bytes_mean']:.0f} bytes mean, {report['step_frame_bytes_max']} max, "
          f"encoded in {report['step_frame_encode_ms']:.2f} ms")
    print(f"rollout state {report['rollout_state_bytes'] / 1e6:.1f} MB")
    memory = report.get("peak_memory")
    if memory:
        what = "peak allocation" if report["device"].startswith("cuda") else "peak resident-set growth"
        print(f"{what}: plain {memory['plain_bytes'] / 1e6:.1f} MB, stream {memory['stream_bytes'] / 1e6:.1f} MB, "
              f"extra {memory['extra_bytes'] / 1e6:.1f} MB")
    print()


if __name__ == "__main__":
    sys.exit(main())
