"""The UIDs of an export's objects: the same export of the same source gives the same UIDs.

Owns: `ExportUIDs`, the Series Instance, SOP Instance and (for a Parametric Map without the
source's geometry) Frame of Reference UIDs of every object of one export. With a source
DICOM header they are 2.25 UIDs of name-based (version 5, SHA-1) UUIDs in medviz's own
NAMESPACE (PS3.5 B.2, ISO/IEC 9834-8), the name made of the source's SOP Instance UID, the
token description (token index or range and text), the method, whether the model is a
stand-in, a SHA-256 digest of the map and its regions, and the object's kind and UID role:
re-exporting or re-sending the same token and method gives the same UIDs, so an archive sees
the same instances again and stores no duplicates; any other token, method, model output or
source gives other UIDs (the digest keeps two different maps that share a description from
ever sharing an instance UID). Without a header (PNG/JPEG) every UID is new each time (2.25
of a random UUID). Does not own: the objects (export/objects.py, presentation_state.py).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.uid import generate_uid

from medviz_core.types import FloatMap, Region

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "medviz:dicom-export")
"""The UUID namespace of medviz's export UIDs: fixed, so the same name gives the same UID on any machine."""


@dataclass(frozen=True)
class ExportUIDs:
    """Where the UIDs of one export come from: `seed` None means new random UIDs (UUID-derived)."""

    seed: tuple[str, ...] | None

    @classmethod
    def of(cls, source_instance_uid: str | None, description: str, method: str, stand_in: bool,
           relevancy: FloatMap, regions: Sequence[Region]) -> ExportUIDs:
        """Deterministic UIDs for a source with a header (`source_instance_uid`), fresh ones without."""
        if source_instance_uid is None:
            return cls(None)
        model = "stand-in" if stand_in else "model"
        return cls(("medviz export", source_instance_uid, description, method, model, map_digest(relevancy, regions)))

    def series(self, kind: str) -> str:
        """The Series Instance UID of the object of `kind` (each object is its own series)."""
        return self._uid(kind, "series")

    def instance(self, kind: str) -> str:
        """The SOP Instance UID of the object of `kind`."""
        return self._uid(kind, "instance")

    def frame_of_reference(self, kind: str) -> str:
        """A Frame of Reference UID of its own for the object of `kind` (a Parametric Map without geometry)."""
        return self._uid(kind, "frame of reference")

    def _uid(self, kind: str, role: str) -> str:
        if self.seed is None:
            return str(generate_uid(prefix=None))
        return f"2.25.{uuid.uuid5(NAMESPACE, chr(31).join((*self.seed, kind, role))).int}"


def map_digest(relevancy: FloatMap, regions: Sequence[Region]) -> str:
    """SHA-256 hex of the map's shape and float32 values and each region's polygon, box and mass."""
    digest = hashlib.sha256()
    values = np.ascontiguousarray(relevancy, dtype=np.float32)
    digest.update(repr(values.shape).encode())
    digest.update(values.tobytes())
    for region in regions:
        digest.update(repr((tuple(region.polygon), tuple(region.box), float(region.mass))).encode())
    return digest.hexdigest()
