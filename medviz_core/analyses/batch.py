"""Faithfulness in batch over a recording's tokens: the `medviz faithfulness` command's work.

Owns: `plan_faithfulness` (the requests for chosen tokens and methods, every refusal
before any model is loaded) and `faithfulness_rows`, which computes what the browser's jobs
compute (compute.faithfulness_of_token: the same numbers as one job per method, with
each token's random baselines computed once for all its methods) for every chosen
(token, method) of a recording, answers from the recording when a result is already there,
appends each new `done` result to the recording (so a replay shows it), and yields one
`FaithfulnessRow` per pair; `summarise` averages the areas per method. Does not own the
curves (analyses/faithfulness.py) or printing (server/cli_engine.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from medviz_core.analyses.compute import AnalysisSource, faithfulness_of_token, job_id
from medviz_core.analyses.kinds import check_request
from medviz_core.engine.api import AnalysisEngine
from medviz_core.errors import Cancelled, RequestError
from medviz_core.recording.file import append_frame
from medviz_core.types import TokenRangeError, token_range
from medviz_core.wire.client_frames import AnalyzeRequest
from medviz_core.wire.results import AnalysisFrame, FaithfulnessResult
from medviz_core.wire.server_frames import decode


@dataclass(frozen=True)
class FaithfulnessRow:
    index: int
    text: str
    method: str
    result: FaithfulnessResult
    recorded: bool  # answered from the recording, not computed now


@dataclass(frozen=True)
class MethodSummary:
    method: str
    tokens: int
    deletion_auc: float  # lower: the map found what the token needed
    insertion_auc: float  # higher: the same, read the other way
    random_deletion_auc: float
    random_insertion_auc: float


def parse_tokens(spec: str | None, count: int) -> range:
    """`A:B` (both included, as `medviz export --token` reads it; either side may be empty), `N` (one token) or
    None (all) -> indices."""
    if spec is None or spec.strip() in ("", ":"):
        return range(count)
    try:
        return token_range(spec, count)
    except TokenRangeError as error:
        if error.outside:
            raise RequestError(f"--tokens {spec!r} must pick tokens within 0..{count - 1}") from None
        raise RequestError(f"--tokens must be A:B or N with integers; got {spec!r}") from None


def plan_faithfulness(source: AnalysisSource, tokens: Sequence[int], methods: Sequence[str],
                      steps: int) -> list[AnalyzeRequest]:
    """One request per (token, method), token-major; special tokens (end of turn) are skipped.

    RequestError for any the source cannot answer, before anything runs.
    """
    requests = list(dict.fromkeys(AnalyzeRequest("faithfulness", index, method=method, steps=steps)
                                  for index in tokens if not source.steps[index].is_special for method in methods))
    for request in requests:
        check_request(source, request)
    return requests


def faithfulness_rows(engine_for: Callable[[], AnalysisEngine], source: AnalysisSource,
                      requests: Sequence[AnalyzeRequest], save: bool = True,
                      cancel: threading.Event | None = None) -> Iterator[FaithfulnessRow]:
    """Deletion/insertion for each planned request, answered from the recording when it is there.

    `engine_for()` is called once, when the first result has to be computed (a batch the
    recording already answers loads no model). Stops early, without a row for the
    unfinished token, once `cancel` is set.
    """
    cancel = cancel or threading.Event()
    engine: AnalysisEngine | None = None
    by_token: dict[int, list[AnalyzeRequest]] = {}
    for request in requests:
        by_token.setdefault(request.index, []).append(request)
    for index, mine in by_token.items():
        text = source.steps[index].text
        fresh = [r for r in mine if job_id(r) not in source.recorded]
        computed = {}
        if fresh:
            steps = {r.steps for r in fresh}
            assert len(steps) == 1, "one steps value per batch"
            engine = engine if engine is not None else engine_for()
            try:
                for method, result in faithfulness_of_token(engine, source, index, tuple(r.method for r in fresh),
                                                            steps.pop(), cancel):
                    computed[method] = result
            except Cancelled:
                return
        for request in mine:
            job = job_id(request)
            recorded = source.recorded.get(job)
            data = recorded or AnalysisFrame(job, "faithfulness", index, "done", "", computed[request.method]).to_wire()
            if recorded is None and save and source.recording is not None:
                append_frame(source.recording, data)
            frame = decode(data)
            assert isinstance(frame, AnalysisFrame) and isinstance(frame.result, FaithfulnessResult)
            yield FaithfulnessRow(index, text, request.method, frame.result, recorded=recorded is not None)


def summarise(rows: Sequence[FaithfulnessRow]) -> list[MethodSummary]:
    """Mean areas per method, in the order the methods first appear."""
    order = list(dict.fromkeys(row.method for row in rows))
    out = []
    for method in order:
        mine = [row.result for row in rows if row.method == method]
        n = len(mine)
        out.append(MethodSummary(
            method=method, tokens=n,
            deletion_auc=sum(r.deletion.auc for r in mine) / n,
            insertion_auc=sum(r.insertion.auc for r in mine) / n,
            random_deletion_auc=sum(r.random_deletion.auc for r in mine) / n,
            random_insertion_auc=sum(r.random_insertion.auc for r in mine) / n,
        ))
    return out
