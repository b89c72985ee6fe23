"""The `medviz` command, the top of the import graph: `generate` here, the others from cli/analysis.py
(analyze, agreement), cli/commands.py (serve, worker, record, replay, watch, faithfulness, export) and cli/pacs.py
(pacs find).

Owns: the parser, `main`, and turning a MedvizError into one clear line on stderr with
exit code 2 (no traceback). Does not own what the commands do beyond printing the stream.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

from medviz_core.engine.api import StreamEngine
from medviz_core.errors import MedvizError
from server.cli.analysis import add_analysis_commands, add_prompt_argument
from server.cli.commands import add_server_commands
from server.cli.deidentify import add_deidentify_command
from server.cli.html import add_html_command
from server.cli.pacs import add_pacs_command, add_study_source, study_source
from server.cli.video import add_video_command
from server.settings import DEFAULT_MODEL


def _generate(args: argparse.Namespace) -> int:
    from medviz_core.models.load import load_engine

    study = study_source(args, args.image)  # a missing file or study fails before the model loads
    write_generation(load_engine(args.model, compile=args.compile), study, args, sys.stdout, sys.stderr)
    return 0


def write_generation(engine: StreamEngine, study: Sequence[Any], args: argparse.Namespace, out: IO[str],
                     notes: IO[str]) -> None:
    """`medviz generate` on a loaded engine: a line per token, or with --plain exactly the report's text as
    the browser shows it (the primed first words, then every token; the end's note goes to `notes`).
    Options left unset are the model's suggestion (`Engine.suggested`), as for the browser."""
    from medviz_core.wire.client_frames import ParamsRequest

    stated = ParamsRequest(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                           repetition_penalty=args.repetition_penalty, seed=args.seed)
    cancel = threading.Event()
    run = engine.stream([f.data for f in study], labels=[f.label for f in study], question=args.question,
                        params=stated.resolve(engine.suggested), cancel=cancel, preset=args.prompt)
    sequence = list(run.prompt.token_ids)  # every position's token id, for --context
    if args.plain:
        out.write(run.prompt.primer)
    else:
        p = run.params
        out.write(f"model {engine.facts.name}: max_new_tokens {p.max_new_tokens}, temperature {p.temperature:g}, "
                  f"repetition_penalty {p.repetition_penalty:g}, seed {p.seed}\n")
        if run.prompt.primer:
            out.write(f"     {run.prompt.primer!r} (the prompt's, before the first token)\n")
    try:
        for step in run:
            if not args.plain:
                several = len(step.images) > 1
                shares = "".join(f" {f.label or i}:{f.share:.3f}" for i, f in enumerate(step.images)) if several else ""
                read = ""
                if args.context:
                    links = step.context[:3]
                    texts = engine.token_texts([sequence[link.position] for link in links])
                    words = [f"{text!r}@{link.position}:{link.value:.3f}" for text, link in zip(texts, links)]
                    read = f" read {' '.join(words)} sink {step.sink:.3f}"
                out.write(
                    f"{step.index:4d} {step.text!r:24} peak {step.stats.peak_zone:15} "
                    f"image_mass {step.image_mass:.3f}{shares}{read}\n"
                )
            else:
                out.write(step.text)
            out.flush()
            sequence.append(step.token_id)
    except KeyboardInterrupt:
        cancel.set()
    end = run.end
    if end is not None:
        (notes if args.plain else out).write(f"\n[{end.reason}: {end.tokens} tokens in {end.total_ms / 1000:.1f} s]\n")


def _add_generate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("generate", help="stream a report for one image to the terminal")
    parser.add_argument("image", nargs="*", help="PNG, JPEG or DICOM files, or a study folder (frontal views first); "
                        "or --pacs URL --study UID")
    add_study_source(parser)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="tiny | demo | random:medgemma-4b | hub id | folder")
    parser.add_argument("--question", default=None, help="ask a question instead of writing the full report")
    add_prompt_argument(parser)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's suggestion (256)")
    parser.add_argument("--temperature", type=float, default=None, help="default: the model's suggestion (0, greedy)")
    parser.add_argument("--repetition-penalty", type=float, default=None,
                        help="default: the model's suggestion (demo: 1.3)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--plain", action="store_true", help="print only the text, not a line per token")
    parser.add_argument("--context", action="store_true",
                        help="per token, also the 3 words it attended to most and its attention on <bos>")
    parser.add_argument("--compile", action="store_true",
                        help="compile the decode step (torch.compile over a static cache; CUDA graphs on a GPU); "
                        "the first token of a new length waits for the compile")
    parser.set_defaults(handler=_generate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medviz", description="Watch MedGemma look at a chest X-ray as it writes.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_generate(subparsers)
    add_analysis_commands(subparsers)
    add_server_commands(subparsers)
    add_deidentify_command(subparsers)
    add_html_command(subparsers)
    add_video_command(subparsers)
    add_pacs_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except MedvizError as error:
        print(f"medviz: {error.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
