"""On-demand analysis of one generated token: gradient relevancy, the layer x head view, a scorer.

Owns: re-running the model over the sequence up to a chosen token (the real prompt and
image, then the generated tokens before it) for
- `gradient_relevancy`: Chefer et al. 2021's rule for decoders (docs/analysis.md):
  one forward with the attention probabilities in the autograd graph, backward from the
  token's logit, then `Abar[l] = mean_h (grad[l] * A[l])+`, `R = I`, `R += Abar[l] @ R`
  for l = 0..L-1, read at `R[q, I]`;
- `layer_head_view`: every layer's and head's attention of the token's query to the image
  (L x H maps) with each head's image_mass and entropy;
- `token_scorer`: the probability of the token given a (masked) image, for faithfulness.
Does not own the generation loop (engine/run.py) or the curves and scores (analyses/faithfulness.py,
analyses/agreement.py). Each takes the engine as `engine.api.AnalysisEngine` (what it calls on one). These
calls are blocking torch code; run them on the model's worker thread.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medviz_core.engine.api import AnalysisEngine, ImageInput
from medviz_core.engine.capture import AttentionRecorder, Capture
from medviz_core.errors import RequestError
from medviz_core.types import FloatMap


@dataclass(frozen=True)
class TokenContext:
    """The sequence up to a generated token: prompt inputs plus the tokens before it."""

    inputs: Any  # processor outputs of the prompt (engine.inputs_for)
    generated: tuple[int, ...]  # every generated token id of the run
    index: int  # which generated token to explain
    preset: str | None = None  # the prompt preset of the run (prompts.PRESETS)

    @property
    def target(self) -> int:
        return self.generated[self.index]


def token_context(engine: AnalysisEngine, image: ImageInput | Sequence[ImageInput], question: str | None,
                  generated: Sequence[int], index: int, labels: Sequence[str] = (),
                  preset: str | None = None) -> TokenContext:
    """The context of generated token `index` of a run on `image` (one image or a study's list)."""
    if not 0 <= index < len(generated):
        raise RequestError(f"token index must be in 0..{len(generated) - 1}; got {index}")
    inputs = engine.inputs_for(image, question, labels, preset)
    return TokenContext(inputs=inputs, generated=tuple(generated), index=index, preset=preset)


def _prefix_kwargs(engine: AnalysisEngine, context: TokenContext, pixel_values: Any = None) -> dict[str, Any]:
    """Model inputs for prompt + generated[:index]; the last position's logits predict the target."""
    inputs = context.inputs
    before = torch.tensor([list(context.generated[: context.index])], dtype=torch.long, device=engine.device)
    ids = torch.cat([inputs["input_ids"], before], dim=1)
    token_types = torch.cat([inputs["token_type_ids"], torch.zeros_like(before)], dim=1)
    return {
        "input_ids": ids,
        "pixel_values": inputs["pixel_values"] if pixel_values is None else pixel_values,
        "token_type_ids": token_types,
        "attention_mask": torch.ones_like(ids),
        "use_cache": False,
    }


def _image_positions(engine: AnalysisEngine, context: TokenContext) -> torch.Tensor:
    ids: torch.Tensor = context.inputs["input_ids"][0]
    return (ids == engine.image_token_id).nonzero().flatten()


def gradient_relevancy(engine: AnalysisEngine, context: TokenContext,
                       cancel: threading.Event | None = None) -> FloatMap:
    """Chefer's decoder relevancy of the target token over each image's grid (raw values, >= 0).

    Shape (images, grid_h, grid_w): one map per image of the prompt, in prompt order.
    """
    layers = engine.facts.layers
    recorder = AttentionRecorder(layers, cancel)
    embeddings = engine.model.get_input_embeddings()
    # Gradients flow from the logit back to the attention through the activations only:
    # the embedding output is made a graph leaf, so no parameter gradient is ever built.
    hook = embeddings.register_forward_hook(lambda _m, _i, out: out.detach().requires_grad_(True))
    try:
        with torch.enable_grad(), recorder.active():
            output = engine.model(**_prefix_kwargs(engine, context), logits_to_keep=1)
            logit = output.logits[0, -1, context.target]
        probs = [p for p in recorder.probs if p is not None]
        if len(probs) != layers:
            raise RuntimeError(f"recorded {len(probs)} of {layers} layers")
        grads = torch.autograd.grad(logit, probs)
    finally:
        hook.remove()
    q = int(probs[0].shape[1]) - 1
    with torch.no_grad():
        relevance = torch.eye(q + 1, device=engine.device)  # [T, T]
        for attention, grad in zip(probs, grads):
            weighted = (grad * attention).clamp(min=0).mean(0)  # [T, T]
            relevance = relevance + weighted @ relevance
        row = relevance[q, _image_positions(engine, context)]
    return row.reshape(-1, *engine.grid).float().cpu().numpy()


@dataclass(frozen=True)
class LayerHeadView:
    """Attention of one token's query to the image, per layer and head."""

    maps: np.ndarray  # [layers, heads, images, grid_h, grid_w] float32
    image_mass: np.ndarray  # [layers, heads]: share of the head's attention on the image(s)
    entropy: np.ndarray  # [layers, heads]: entropy of the head's image attention (normalised), in bits / log2 N


def layer_head_view(engine: AnalysisEngine, context: TokenContext,
                    cancel: threading.Event | None = None) -> LayerHeadView:
    """Every layer's and head's attention of the token's query to the image; errors.Cancelled between layers
    once `cancel` is set."""
    facts = engine.facts
    kwargs = _prefix_kwargs(engine, context)
    length = int(kwargs["input_ids"].shape[1])
    capture = Capture(layers=facts.layers, heads=facts.heads, image_positions=_image_positions(engine, context),
                      max_length=length, rollout=False, device=engine.device, cancel=cancel)
    with torch.inference_mode(), capture.forward(0, length):
        engine.model(**kwargs, logits_to_keep=1)
    rows = capture.head_rows.float().cpu().numpy()  # [layers, heads, N]
    mass = rows.sum(-1)
    p = rows / np.where(mass > 0, mass, 1.0)[..., None]
    entropy = -(p * np.log2(p + 1e-12)).sum(-1) / math.log2(rows.shape[-1])
    maps = rows.reshape(facts.layers, facts.heads, -1, *engine.grid).astype(np.float32)
    return LayerHeadView(maps=maps, image_mass=mass.astype(np.float32), entropy=entropy.astype(np.float32))


def token_scorer(
    engine: AnalysisEngine,
    context: TokenContext,
    question: str | None,
    study: Sequence[np.ndarray] = (),
    labels: Sequence[str] = (),
    image_index: int = 0,
) -> Callable[[np.ndarray], float]:
    """A function image -> probability of the target token at its position, for faithfulness curves.

    For a study of several images, pass them all as `study` (with their `labels`): the
    scored image replaces image `image_index` and the others stay as they were.
    """
    if study and not 0 <= image_index < len(study):
        raise RequestError(f"image index must be in 0..{len(study) - 1}; got {image_index}")

    def score(image: np.ndarray) -> float:
        pictures: list[np.ndarray] = list(study) if study else [image]
        pictures[image_index if study else 0] = image
        pixels = engine.inputs_for(pictures, question, labels, context.preset)["pixel_values"]
        with torch.inference_mode():
            logits = engine.model(**_prefix_kwargs(engine, context, pixels), logits_to_keep=1).logits[0, -1]
        return float(torch.softmax(logits.float(), dim=-1)[context.target].item())

    return score
