"""The engine as the rest of medviz sees it: typed, torch-free Protocols for the seam between them.

Owns: `ImageInput` (what a caller may hand the engine as one image), `EngineRun` (what
`stream` returns, as the session's frames and the command line read it), `AnalysisEngine`
(what the on-demand analyses call on an engine: analyses/gradient.py and the kinds in
analyses/kinds.py) and `StreamEngine` (an `AnalysisEngine` that also streams: what the
server, session_frames.py and the CLI hold). `engine.Engine` satisfies both, and mypy checks it
where a loaded engine is handed over (server/app.py, the CLI, the Ray replica); the server
tests' wrappers satisfy them by delegation. Imports no torch at run time, so a module can
name an engine without loading one. Does not own the engine (engine/engine.py) or the loop (engine/run.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Union

import numpy as np

from medviz_core.types import GenerationParams, ModelFacts, Prompt, Step, StreamEnd

if TYPE_CHECKING:
    import torch

ImageInput = Union[bytes, np.ndarray, str, "os.PathLike[str]"]  # file bytes, a file path or an RGB uint8 array


class EngineRun(Protocol):
    """One streaming generation (run.Run): iterate it for Steps; `end` says how it finished."""

    @property
    def prompt(self) -> Prompt: ...

    @property
    def methods(self) -> tuple[str, ...]: ...

    @property
    def params(self) -> GenerationParams: ...

    @property
    def end(self) -> StreamEnd | None: ...

    def __iter__(self) -> Iterator[Step]: ...

    def close(self) -> None: ...


class AnalysisEngine(Protocol):
    """What the on-demand analyses call: the model's facts, its inputs for a prompt, and the model itself."""

    @property
    def facts(self) -> ModelFacts: ...

    @property
    def grid(self) -> tuple[int, int]: ...

    @property
    def image_token_id(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def model(self) -> Any: ...  # the loaded transformers model: analyses run it again over a token's sequence

    def inputs_for(self, image: ImageInput | Sequence[ImageInput], question: str | None = None,
                   labels: Sequence[str] = (), preset: str | None = None) -> Any: ...


class StreamEngine(AnalysisEngine, Protocol):
    """What the server, session_frames.py and the CLI call: an AnalysisEngine that streams runs."""

    @property
    def suggested(self) -> GenerationParams: ...  # the sampling parameters a UI should offer for this model

    def stream(self, image: ImageInput | Sequence[ImageInput], question: str | None = None,
               params: GenerationParams | None = None, *, methods: tuple[str, ...] | list[str] | None = None,
               labels: Sequence[str] = (), preset: str | None = None, cancel: threading.Event | None = None,
               **changes: Any) -> EngineRun: ...

    def token_texts(self, ids: Sequence[int], images: frozenset[int] = frozenset()) -> tuple[str, ...]: ...
