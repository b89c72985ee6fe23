"""The domain's limits on what one run may be asked: the one place each is defined.

Owns: MAX_IMAGES (images in a study), MAX_QUESTION_CHARS and MAX_LABEL_CHARS (what prompts.py
checks), MAX_NEW_TOKENS (what GenerationParams checks). A base module: it imports nothing from
medviz_core, so types.py, prompts.py and engine/engine.py read these below the protocol, and
wire/limits.py re-exports them beside the protocol's own constants. Does not own the
server's caps on a client (wire/limits.ClientLimits) or the sampling bounds (types.py).
"""

from __future__ import annotations

MAX_IMAGES = 4  # images in one session (a study: PA, lateral, prior...)
MAX_QUESTION_CHARS = 2000  # after stripping surrounding whitespace (the engine's bound; a server may allow fewer)
MAX_LABEL_CHARS = 32  # "PA", "lateral", "prior 2024-03"
MAX_NEW_TOKENS = 2048
"""The most tokens one run may generate (a server may allow fewer)."""
