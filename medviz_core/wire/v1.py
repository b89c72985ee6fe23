"""Reading protocol v1 (recordings made before protocol v2): each v1 frame upgraded to its v2 map.

Owns: `upgrade`, the field mapping of the two changed frames. v1 `start` had the first
image as `image` and the others as `more`: v2 has `images` (labels default to "", the first
image's positions to the prompt's) and a prompt with `preset` "medviz" and no token texts.
v1 `step` had the first image's maps and statistics at the top level, `shares` and `more`
for studies, and `mass` the total: v2 has one `images` block per image with its `share`,
and `mass` the total. Every other frame is the same in both versions (their `id`, new in
v2, is absent). The maps are kept as they were quantised, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medviz_core.errors import ProtocolError
from medviz_core.wire.codec import VERSION, describe, get_field, optional_field

_FOCUS = ("maps", "ent", "ent_n", "peak", "zone", "regions")


def upgrade(f: Mapping[str, Any]) -> dict[str, Any]:
    """A v1 frame's map -> the v2 map of the same frame."""
    kind = f.get("type")
    if kind == "start":
        return _start(f)
    if kind == "step":
        return _step(f)
    return {**f, "v": VERSION}


def _start(f: Mapping[str, Any]) -> dict[str, Any]:
    prompt = dict(get_field(f, "prompt", dict, "start"))
    positions = get_field(prompt, "image_positions", list, "start")
    first = dict(get_field(f, "image", dict, "start"))
    first.setdefault("label", "")
    first.setdefault("positions", positions)
    more = [dict(m) for m in optional_field(f, "more", list, [], "start") if isinstance(m, dict)]
    for image in more:
        image.setdefault("label", "")
        image.setdefault("positions", [])
    prompt.setdefault("preset", "medviz")
    prompt.setdefault("tokens", [])
    body = {k: v for k, v in f.items() if k not in ("image", "more", "prompt")}
    return {**body, "v": VERSION, "prompt": prompt, "images": [first, *more]}


def _step(f: Mapping[str, Any]) -> dict[str, Any]:
    shares = optional_field(f, "shares", list, [], "step")
    first = {key: get_field(f, key, (dict, list, str, float, int), "step") for key in _FOCUS}
    first["share"] = shares[0] if shares else get_field(f, "mass", float, "step")
    images = [first]
    for number, entry in enumerate(optional_field(f, "more", list, [], "step")):
        if not isinstance(entry, dict):
            raise ProtocolError(f"an image of the step frame must be a map; got {describe(entry)}")
        image = {key: entry[key] for key in _FOCUS if key in entry}
        image["share"] = shares[number + 1] if number + 1 < len(shares) else get_field(entry, "mass", float, "step")
        images.append(image)
    body = {k: v for k, v in f.items() if k not in (*_FOCUS, "shares", "more")}
    return {**body, "v": VERSION, "images": images}
