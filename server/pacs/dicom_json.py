"""Reading values out of a PACS's DICOM JSON (PS3.18 F.2) as untrusted input: each value checked for type and length.

Owns: `items` (a JSON answer -> at most N datasets), the typed readers (`text`, `texts`, `person`, `number`,
`uid`, `uids_in`) and `is_uid` / `check_uid`, the one rule for a UID medviz puts into a URL path (digits and
dots, at most 64 characters: no '/', no '..'). A value of the wrong type or length is a PacsBadAnswer naming the
attribute. Does not own the HTTP exchanges (client.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from server.pacs.errors import PacsBadAnswer, PacsQueryError, PacsTooLarge

UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
MAX_UID = 64
MAX_TEXT = 1024  # LO is 64 characters, LT 10240; a study's description or a name never needs more here
Dataset = Mapping[str, Any]


def is_uid(value: object) -> bool:
    """A DICOM UID (PS3.5 9.1): digits and dots, no leading zero in a component, at most 64 characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_UID and UID.fullmatch(value) is not None


def check_uid(value: str, what: str) -> str:
    """`value` if it is a UID; else a PacsQueryError (it is never put into a URL)."""
    if not is_uid(value):
        raise PacsQueryError(f"{what} must be a DICOM UID (digits and dots, at most 64 characters); "
                             f"got {value[:80]!r}")
    return value


def items(body: bytes, what: str, at_most: int) -> list[Dataset]:
    """A QIDO-RS answer: a JSON array of at most `at_most` datasets (an empty body: none)."""
    if not body.strip():
        return []
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        raise PacsBadAnswer(f"the PACS's answer to {what} is not JSON") from None
    if not isinstance(answer, list) or not all(isinstance(i, dict) for i in answer):
        raise PacsBadAnswer(f"the PACS's answer to {what} is not a list of DICOM JSON datasets")
    if len(answer) > at_most:
        raise PacsTooLarge(f"the PACS answered {what} with {len(answer)} items; medviz reads at most {at_most}")
    return answer


def dataset(body: bytes, what: str) -> Dataset:
    """A single DICOM JSON dataset (a STOW-RS answer); a one-item array is accepted too; empty: {}."""
    if not body.strip():
        return {}
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        raise PacsBadAnswer(f"the PACS's answer to {what} is not JSON") from None
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if not isinstance(answer, dict):
        raise PacsBadAnswer(f"the PACS's answer to {what} is not a DICOM JSON dataset")
    return answer


def _values(item: Dataset, tag: str, what: str, at_most: int = 64) -> list[Any]:
    element = item.get(tag)
    if element is None:
        return []
    values = element.get("Value", []) if isinstance(element, dict) else None
    if not isinstance(values, list) or len(values) > at_most:
        raise PacsBadAnswer(f"the PACS's answer to {what}: attribute {tag} is not a DICOM JSON element of at most "
                            f"{at_most} values")
    return values


def text(item: Dataset, tag: str, what: str, limit: int = MAX_TEXT) -> str:
    """The first value of a string attribute ("" when absent)."""
    values = _values(item, tag, what)
    if not values or values[0] is None:
        return ""
    value = values[0]
    if not isinstance(value, str) or len(value) > limit:
        raise PacsBadAnswer(f"the PACS's answer to {what}: attribute {tag} is not a string of at most {limit} "
                            "characters")
    return value.strip()


def texts(item: Dataset, tag: str, what: str, limit: int = 16) -> tuple[str, ...]:
    """Every value of a multi-valued string attribute (e.g. ModalitiesInStudy)."""
    out = []
    for value in _values(item, tag, what):
        if not isinstance(value, str) or len(value) > limit:
            raise PacsBadAnswer(f"the PACS's answer to {what}: attribute {tag} holds a value that is not a "
                                f"string of at most {limit} characters")
        out.append(value.strip())
    return tuple(v for v in out if v)


def person(item: Dataset, tag: str, what: str) -> str:
    """A person name's alphabetic form ("" when absent)."""
    values = _values(item, tag, what)
    if not values or values[0] is None:
        return ""
    value = values[0]
    name = value.get("Alphabetic", "") if isinstance(value, dict) else value
    if not isinstance(name, str) or len(name) > 64 * 5:
        raise PacsBadAnswer(f"the PACS's answer to {what}: attribute {tag} is not a person name")
    return name.strip()


def number(item: Dataset, tag: str, what: str) -> int | None:
    """The first value of an integer attribute (IS given as a string, or US/UL/SL as a number), None when
    absent; a value that is no integer from 0 to 2**31 - 1 is a PacsBadAnswer."""
    values = _values(item, tag, what)
    if not values or values[0] is None:
        return None
    value = values[0]
    if isinstance(value, str) and len(value) <= 12:
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise PacsBadAnswer(f"the PACS's answer to {what}: attribute {tag} is not a whole number")
    return value


def uid(item: Dataset, tag: str, what: str) -> str:
    """A UID attribute that must be present and valid."""
    value = text(item, tag, what, MAX_UID)
    if not is_uid(value):
        raise PacsBadAnswer(f"the PACS's answer to {what}: attribute {tag} is not a valid DICOM UID")
    return value


def sequence(item: Dataset, tag: str, what: str, at_most: int) -> Sequence[Dataset]:
    """A sequence attribute's items (datasets), at most `at_most`."""
    values = _values(item, tag, what, at_most)
    if not all(isinstance(v, dict) for v in values):
        raise PacsBadAnswer(f"the PACS's answer to {what}: sequence {tag} holds an item that is not a dataset")
    return values
