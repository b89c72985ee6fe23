"""medviz engine: stream MedGemma's tokens with exact per-step attention relevancy maps.

The engine knows nothing about HTTP or browsers. Start at `load_engine(ref)` and
`Engine.stream(image, ...)`; see README.md and docs/architecture.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
