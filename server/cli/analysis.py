"""The analysis subcommands of `medviz`: `analyze` one token, `agreement` over a folder of images.

Owns: wiring analyses/gradient.py, analyses/faithfulness.py and analyses/agreement.py to the terminal. Does not own
the computations. Both commands run a fresh streamed generation first, so the token
sequence they explain is the one the engine produced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medviz_core.engine.api import StreamEngine
from medviz_core.errors import MedvizError
from server.settings import DEFAULT_MODEL

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def _ascii_map(values: np.ndarray) -> str:
    ramp = " .:-=+*#%@"
    low, high = float(values.min()), float(values.max())
    span = high - low or 1.0
    rows = ["".join(ramp[int((v - low) / span * (len(ramp) - 1))] * 2 for v in row) for row in values]
    return "\n".join(rows)


def _length(args: argparse.Namespace, engine: StreamEngine) -> int:
    """--max-new-tokens, or the model's suggestion (GenerationParams' default unless the model suggests another)."""
    return int(args.max_new_tokens) if args.max_new_tokens is not None else engine.suggested.max_new_tokens


def _analyze(args: argparse.Namespace) -> int:
    from medviz_core.analyses.faithfulness import faithfulness_report
    from medviz_core.analyses.gradient import gradient_relevancy, layer_head_view, token_context, token_scorer
    from medviz_core.imaging.load import load_image
    from medviz_core.models.load import load_engine

    image_bytes = _read(args.image)
    engine = load_engine(args.model)
    out = sys.stdout
    out.write(_model_line(engine))
    run = engine.stream(image_bytes, question=args.question, preset=args.prompt, max_new_tokens=_length(args, engine))
    steps = []
    for step in run:  # only the tokens up to --token are needed: the run stops there
        steps.append(step)
        if len(steps) > args.token:
            break
    run.close()
    if not 0 <= args.token < len(steps):
        raise MedvizError(f"--token must be in 0..{len(steps) - 1}: the run wrote {len(steps)} tokens")
    tokens = [s.token_id for s in steps]
    context = token_context(engine, image_bytes, args.question, tokens, args.token, preset=args.prompt)
    step = steps[args.token]
    out.write(f"token {args.token}: {step.text!r} (id {step.token_id}), peak {step.stats.peak_zone}, "
              f"image_mass {step.image_mass:.3f}\n")
    gradient = gradient_relevancy(engine, context)
    for number, image_map in enumerate(gradient):
        out.write(f"\ngradient relevancy (Chefer), image {number}, max {image_map.max():.3g}\n"
                  f"{_ascii_map(image_map)}\n")
    view = layer_head_view(engine, context)
    out.write("\nlayer x head: image_mass / entropy\n")
    for layer in range(view.image_mass.shape[0]):
        cells = "  ".join(f"{m:.2f}/{e:.2f}" for m, e in zip(view.image_mass[layer], view.entropy[layer]))
        out.write(f"L{layer:<3} {cells}\n")
    if args.faithfulness:
        relevancy = gradient[0] if args.faithfulness == "gradient" else step.maps[args.faithfulness]
        result = faithfulness_report(load_image(image_bytes), relevancy, token_scorer(engine, context, args.question),
                                     token=args.token, method=args.faithfulness, steps=args.steps)
        if result is not None:
            out.write(f"\nfaithfulness of {args.faithfulness}: deletion AUC {result.deletion.auc:.4f} "
                      f"(random {result.random_deletion.auc:.4f}), insertion AUC {result.insertion.auc:.4f} "
                      f"(random {result.random_insertion.auc:.4f})\n")
    return 0


def _agreement(args: argparse.Namespace) -> int:
    from medviz_core.analyses.agreement import agreement_for_steps, format_report, load_boxes
    from medviz_core.models.load import load_engine

    folder = Path(args.folder)
    labels = Path(args.labels) if args.labels else folder / "labels.csv"
    boxes_by_file = load_boxes(_existing(labels))
    engine = load_engine(args.model)
    sys.stdout.write(_model_line(engine))
    done = 0
    for name in sorted(boxes_by_file):
        boxes = boxes_by_file[name]
        path = folder / name
        if not boxes or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        run = engine.stream(path.read_bytes(), question=args.question, preset=args.prompt,
                            max_new_tokens=_length(args, engine))
        maps = [step.maps for step in run]
        agreement = agreement_for_steps(maps, boxes, run.prompt.images[0].size)
        sys.stdout.write(format_report(agreement, title=f"== {name}") + "\n")
        done += 1
    if done == 0:
        raise MedvizError(f"no image in {str(folder)!r} has boxes in {str(labels)!r}")
    return 0


def _model_line(engine: StreamEngine) -> str:
    """The first line of analyze and agreement: which model the numbers are about, and how it sampled."""
    p = engine.suggested
    return (f"model {engine.facts.name} ({engine.facts.device}); repetition_penalty {p.repetition_penalty:g}, "
            f"temperature {p.temperature:g}\n")


def _read(path: str) -> bytes:
    return _existing(Path(path)).read_bytes()


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise MedvizError(f"file {str(path)!r} does not exist")
    return path


def add_prompt_argument(parser: argparse.ArgumentParser) -> None:
    """`--prompt NAME`: which prompt preset asks the model (prompts.PRESETS)."""
    from medviz_core.prompts import DEFAULT_PRESET, PRESETS

    described = "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())
    parser.add_argument("--prompt", default=DEFAULT_PRESET, choices=list(PRESETS), metavar="NAME",
                        help=f"prompt preset ({described})")


def add_analysis_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    analyze = subparsers.add_parser("analyze",
                                    help="gradient relevancy, layer x head view and faithfulness of one token")
    analyze.add_argument("image")
    analyze.add_argument("--token", type=int, default=0, help="index of the generated token to explain")
    analyze.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}, as every command")
    analyze.add_argument("--question", default=None)
    add_prompt_argument(analyze)
    analyze.add_argument("--max-new-tokens", type=int, default=None,
                         help="default: the model's suggestion (256), as every command; the run stops at --token")
    analyze.add_argument("--faithfulness", default=None, help="a method (or 'gradient') to score by deletion/insertion")
    analyze.add_argument("--steps", type=int, default=8, help="deletion/insertion steps")
    analyze.set_defaults(handler=_analyze)
    agreement = subparsers.add_parser("agreement", help="pointing game and IoU per method over a folder of images")
    agreement.add_argument("folder")
    agreement.add_argument("--labels", default=None, help="labels.csv with boxes (default: FOLDER/labels.csv)")
    agreement.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}, as every command")
    agreement.add_argument("--question", default=None)
    add_prompt_argument(agreement)
    agreement.add_argument("--max-new-tokens", type=int, default=None,
                           help="tokens per image, their maps averaged; default: the model's suggestion (256)")
    agreement.set_defaults(handler=_agreement)
