"""Which instances of a PACS study medviz opens, in which order and under which labels, and retrieving them.

Owns: `choose_views` (image instances only: structured reports, presentation states, segmentations, key object
notes, parametric maps, raw data, PDFs and waveforms are skipped by SOP class; single-frame only; one to
MAX_IMAGES; frontal views first; labels "PA", "AP", "lateral" from ViewPosition, else the series description,
else "image N"; a clear PacsNoImages when nothing is left) and `open_study` (the chosen views retrieved as Part 10
bytes with their labels, for medviz_core.imaging and the start request, which run the upload's own checks on
them). medviz's own exports in a study (series described "medviz ...") are never chosen by default.
Does not own DICOMweb (client.py) nor the image checks (medviz_core/imaging/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medviz_core.limits import MAX_IMAGES
from server.pacs.client import InstanceMatch, PacsClient
from server.pacs.errors import PacsNoImages, PacsQueryError

NON_IMAGE_CLASSES: tuple[tuple[str, str], ...] = (
    # (SOP Class UID prefix, the short name a message uses); the longest prefixes first
    ("1.2.840.10008.5.1.4.1.1.88.59", "KO"),
    ("1.2.840.10008.5.1.4.1.1.88.", "SR"),
    ("1.2.840.10008.5.1.4.1.1.11.", "PR"),
    ("1.2.840.10008.5.1.4.1.1.66.4", "SEG"),
    ("1.2.840.10008.5.1.4.1.1.66", "raw data"),
    ("1.2.840.10008.5.1.4.1.1.30", "PM"),
    ("1.2.840.10008.5.1.4.1.1.104.", "encapsulated document"),
    ("1.2.840.10008.5.1.4.1.1.9.", "waveform"),
    ("1.2.840.10008.5.1.4.1.1.481.", "RT"),
)
FRONTAL = {"PA": "PA", "AP": "AP"}
LATERAL = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}
MEDVIZ_SERIES = "medviz"  # export/objects.series_description starts every export's description with it


@dataclass(frozen=True)
class PacsView:
    study_uid: str
    series_uid: str
    sop_uid: str
    label: str  # "PA" / "AP" / "lateral" / the series description / "image N"


def non_image_kind(sop_class_uid: str) -> str | None:
    """The short name of a non-image SOP class (SR, PR, SEG, KO, ...); None for an image class."""
    for prefix, name in NON_IMAGE_CLASSES:
        if sop_class_uid == prefix.rstrip(".") or sop_class_uid.startswith(prefix):
            return name
    return None


def unusable_kind(instance: InstanceMatch) -> str | None:
    """Why medviz does not open `instance`: its non-image kind (SR, PR, ...; "non-image" for an image class
    without Rows and Columns), or "multi-frame"; None for a single-frame image."""
    kind = non_image_kind(instance.sop_class_uid)
    if kind is None and (instance.rows is None or instance.columns is None):
        return "non-image"
    if kind is None and instance.frames > 1:
        return "multi-frame"
    return kind


def choose_views(instances: Sequence[InstanceMatch], wanted: Sequence[str] | None = None, study_uid: str = "",
                 descriptions: Mapping[str, str] | None = None) -> tuple[PacsView, ...]:
    """The views to open: `wanted` (SOP instance UIDs, in that order) or else the first MAX_IMAGES usable images,
    frontal views first. PacsNoImages when none is usable; PacsQueryError for a wanted UID the list lacks."""
    names = descriptions or {}
    skipped: dict[str, str] = {}
    usable = []
    for instance in instances:
        kind = unusable_kind(instance)
        if kind is None:
            usable.append(instance)
        else:
            skipped.setdefault(kind, instance.sop_uid)
    where = f"study {study_uid}" if study_uid else "the study"
    if wanted is not None:
        return _wanted(instances, usable, wanted, study_uid, names, where)
    defaults = [i for i in usable if not names.get(i.series_uid, "").startswith(MEDVIZ_SERIES)]
    if not defaults:
        raise PacsNoImages(_nothing_usable(where, skipped, bool(usable)))
    ordered = sorted(defaults, key=lambda i: (_rank(i.view_position), i.instance_number is None,
                                              i.instance_number or 0))[:MAX_IMAGES]
    return _labelled(ordered, study_uid, names)


def _wanted(instances: Sequence[InstanceMatch], usable: list[InstanceMatch], wanted: Sequence[str], study_uid: str,
            names: Mapping[str, str], where: str) -> tuple[PacsView, ...]:
    if not 1 <= len(wanted) <= MAX_IMAGES or len(set(wanted)) != len(wanted):
        raise PacsQueryError(f"choose 1 to {MAX_IMAGES} different images of {where}; got {len(wanted)}")
    by_uid = {i.sop_uid: i for i in usable}
    listed = {i.sop_uid: i for i in instances}
    for uid in wanted:
        if uid not in listed:
            raise PacsQueryError(f"{where} holds no instance {uid[:64]}")
        if uid not in by_uid:
            raise PacsNoImages(f"instance {uid} of {where} is {_kind_words(unusable_kind(listed[uid]) or '')}, "
                               "which medviz does not read")
    return _labelled([by_uid[uid] for uid in wanted], study_uid, names)


def _labelled(chosen: Sequence[InstanceMatch], study_uid: str, names: Mapping[str, str]) -> tuple[PacsView, ...]:
    views = []
    for number, instance in enumerate(chosen):
        position = instance.view_position.strip().upper()
        label = FRONTAL.get(position) or ("lateral" if position in LATERAL else "") or names.get(
            instance.series_uid, "").strip() or f"image {number + 1}"
        views.append(PacsView(study_uid, instance.series_uid, instance.sop_uid, label))
    return tuple(views)


def _rank(view_position: str) -> int:
    position = view_position.strip().upper()
    return 0 if position in FRONTAL else 1 if position in LATERAL else 2


def _kind_words(kind: str) -> str:
    return {"multi-frame": "a multi-frame image", "non-image": "not an image"}.get(kind, f"not an image ({kind})")


def _nothing_usable(where: str, skipped: Mapping[str, str], only_medviz: bool) -> str:
    if only_medviz:
        return f"{where} holds only medviz's own results; choose an image to open by hand"
    if not skipped:
        return f"{where} holds no instances"
    kinds = [k for k in skipped if k != "multi-frame"]
    if "multi-frame" in skipped and not kinds:
        return f"{where} holds only multi-frame images, which medviz does not read (one frame per image)"
    if "multi-frame" not in skipped:
        return f"{where} holds only non-image objects ({', '.join(kinds)})"
    return (f"{where} holds only non-image objects ({', '.join(kinds)}) and multi-frame images, which medviz does "
            "not read")


def open_study(client: PacsClient, study_uid: str, series_uid: str | None = None, chosen: Sequence[str] | None = None,
               max_images: int = MAX_IMAGES) -> tuple[list[bytes], tuple[str, ...]]:
    """The chosen views (or the default ones) retrieved as Part 10 files, and their labels, in view order."""
    instances = client.instances(study_uid, series_uid)
    descriptions = {s.series_uid: s.description for s in client.series(study_uid)}
    views = choose_views(instances, chosen, study_uid, descriptions)[:max_images]
    return [client.retrieve(study_uid, v.series_uid, v.sop_uid) for v in views], tuple(v.label for v in views)
