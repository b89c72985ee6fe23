"""Where in the chest: a 3D estimate from one frontal and one lateral attention map.

Owns: deciding from view labels which image of a study is the frontal and which the
lateral (`choose_views`), and the biplanar back-projection `V(y, x, z) = F(y, x) * S(y, z)`
of the two maps onto a small cubic grid (`biplanar_volume`, docs/methods.md "Biplanar 3D
estimate"). Pure numpy: no torch, no model, no wire format (wire/results.py owns the field
that carries a volume), no drawing (web/js/draw/volume.js).

Axes of a `Volume`, in the patient's frame whatever way the images were displayed:
- y: head -> feet (image rows, top -> bottom, on both views);
- x: the patient's right -> left (frontal columns; in the radiological display of both a
  PA and an AP the patient's right is on the image's left, DICOM PatientOrientation L\\F);
- z: anterior -> posterior (lateral columns; in the usual display of the standard left
  lateral the patient faces the image's left, sternum left and spine right, P\\F).
Images displayed the other way round are declared with `frontal_right_on` and
`lateral_anterior_on`, and are mirrored before the product.

`Volume.values` is float32 of shape (size, size, size) indexed [y, x, z], C order: the
flat index of (y, x, z) is `(y * size + x) * size + z`, the order web/js/draw/volume.js reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from medviz_core.errors import RequestError
from medviz_core.imaging.study import VIEW_LABELS

MAX_SIZE = 64
"""The largest grid side: 64^3 float32 cells are 1 MiB, far more than the maps resolve."""

Side = Literal["left", "right"]
ViewKind = Literal["frontal", "lateral"]
FloatVolume = npt.NDArray[np.float32]

FRONTAL_LABELS = ("pa", "ap", "frontal")
"""Labels (imaging/study.py's VIEW_LABELS values and the user's words) naming a frontal view."""
LATERAL_LABELS = ("lateral", "lat")
"""Labels naming a lateral view (imaging/study.py maps LL, RL, LAT and LATERAL to "lateral")."""


@dataclass(frozen=True)
class Volume:
    """A biplanar estimate of where one token looked, on a size^3 grid.

    `values`: float32 (size, size, size) indexed [y, x, z] (y head -> feet, x patient's
    right -> left, z anterior -> posterior), C order, flat index `(y * size + x) * size + z`,
    read-only; normalised to a maximum of 1, or all 0 when either map is 0.
    `peak`: (y, x, z) of the first maximum in that flat order, None for a zero volume.
    `scale`: the product's maximum before normalisation (0 for a zero volume), in the
    units of frontal x lateral relevancy, so absolute strength is not lost.
    """

    values: FloatVolume
    peak: tuple[int, int, int] | None
    scale: float

    @property
    def size(self) -> int:
        return int(self.values.shape[0])


def view_kind(label: str) -> ViewKind | None:
    """A view label -> "frontal", "lateral" or None (unknown, empty or another view).

    Reads DICOM ViewPosition values (PA, AP, LL, RL, LAT, LATERAL) through imaging/study.py's
    VIEW_LABELS, the labels imaging/study.py gives ("PA", "AP", "lateral") and the user's words
    "frontal", "lateral" and "lat"; case and surrounding spaces do not matter.
    """
    if not isinstance(label, str):
        raise RequestError(f"a view label must be a string; got {type(label).__name__}")
    key = label.strip()
    word = VIEW_LABELS.get(key.upper(), key).lower()
    if word in FRONTAL_LABELS:
        return "frontal"
    if word in LATERAL_LABELS:
        return "lateral"
    return None


def choose_views(labels: Sequence[str]) -> tuple[int, int] | None:
    """Per-image view labels -> (frontal index, lateral index), or None.

    None unless exactly one label names a frontal view and exactly one a lateral: two
    frontals (a PA and an AP) or two laterals are ambiguous, and one view is not enough.
    Images whose label names neither (empty, "oblique", ...) are left out of the choice.
    """
    kinds = [view_kind(label) for label in labels]
    frontals = [i for i, kind in enumerate(kinds) if kind == "frontal"]
    laterals = [i for i, kind in enumerate(kinds) if kind == "lateral"]
    if len(frontals) != 1 or len(laterals) != 1:
        return None
    return frontals[0], laterals[0]


def _checked_map(name: str, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A 2-D, finite, real map as float64 with negatives clipped to 0, or RequestError."""
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise RequestError(f"the {name} map must hold real numbers; got dtype {array.dtype}")
    if array.ndim != 2:
        raise RequestError(f"the {name} map must be 2-D (rows, columns); got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise RequestError(f"the {name} map must have at least one row and one column; got shape {array.shape}")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise RequestError(f"the {name} map must be finite; got {bad} NaN or infinite value(s) in shape {array.shape}")
    return np.clip(array.astype(np.float64), 0.0, None)


def _checked_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= MAX_SIZE:
        raise RequestError(f"the volume size must be an integer from 1 to {MAX_SIZE}; got {size!r}")
    return int(size)


def _checked_side(name: str, side: str) -> Side:
    if side not in ("left", "right"):
        raise RequestError(f"{name} must be 'left' or 'right'; got {side!r}")
    return "left" if side == "left" else "right"


def box_weights(n_in: int, n_out: int) -> npt.NDArray[np.float64]:
    """(n_out, n_in) area-resampling weights; each row sums to 1.

    Output cell k covers input span [k * n_in / n_out, (k + 1) * n_in / n_out); its weight
    on input cell i is the length of that span inside [i, i + 1), divided by the span's
    length. Equal sizes give the identity, so 16 x 16 maps on a 16^3 grid are not resampled.
    """
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0.0, None)
    weights: npt.NDArray[np.float64] = overlap / overlap.sum(axis=1, keepdims=True)
    return weights


def resample(grid: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    """A (rows, cols) map -> (size, size) by area resampling on both axes (box_weights)."""
    rows, cols = grid.shape
    out: npt.NDArray[np.float64] = box_weights(rows, size) @ grid @ box_weights(cols, size).T
    return out


def biplanar_volume(
    frontal: npt.ArrayLike,
    lateral: npt.ArrayLike,
    size: int = 16,
    *,
    frontal_right_on: Side = "left",
    lateral_anterior_on: Side = "left",
) -> Volume:
    """Frontal map F (rows, cols) and lateral map S (rows', cols') -> the normalised V = F * S.

    Both maps are raw relevancy values (negatives clipped to 0), each area-resampled to
    (size, size): rows to a common head -> feet scale (top row of each image = y 0, bottom
    = y size-1), frontal columns to x, lateral columns to z. `frontal_right_on` says on
    which side of the frontal image the patient's right is ("left" in radiological display),
    `lateral_anterior_on` on which side of the lateral the patient's front is ("left" for
    the usual left lateral); a "right" mirrors that map first, so x always runs the
    patient's right -> left and z anterior -> posterior. `V(y, x, z) = F(y, x) * S(y, z)`,
    divided by its maximum; a zero map gives a zero volume with no peak.
    """
    size = _checked_size(size)
    f = resample(_checked_map("frontal", frontal), size)
    s = resample(_checked_map("lateral", lateral), size)
    if _checked_side("frontal_right_on", frontal_right_on) == "right":
        f = f[:, ::-1]
    if _checked_side("lateral_anterior_on", lateral_anterior_on) == "right":
        s = s[:, ::-1]
    product = f[:, :, None] * s[:, None, :]  # [y, x, z]
    top = float(product.max())
    if top <= 0.0:
        return Volume(_frozen(np.zeros((size, size, size), np.float32)), None, 0.0)
    values = _frozen((product / top).astype(np.float32))
    y, x, z = (int(i) for i in np.unravel_index(int(np.argmax(values)), values.shape))
    return Volume(values, (y, x, z), top)


def _frozen(values: FloatVolume) -> FloatVolume:
    contiguous = np.ascontiguousarray(values, dtype=np.float32)
    contiguous.flags.writeable = False
    return contiguous
