"""The typed errors of a PACS exchange: one class per kind a user must tell apart, each one clear sentence.

Owns: `PacsError` (a MedvizError) and its kinds: unreachable, unauthorized (401/403), not found (404), timeout,
too large, bad answer, refused query (and its kind, a send whose source's patient cannot be verified), no usable
image, partial store, bad configuration. A message names the
PACS's address and what was asked, never a password or token (the address itself never carries one:
config.py refuses it). Does not own raising them (client.py, views.py, send.py).
"""

from __future__ import annotations

from medviz_core.errors import ErrorCode, MedvizError


class PacsError(MedvizError):
    """Something went wrong between medviz and the PACS; the message says what in one line."""

    code: str = ErrorCode.ERROR
    kind: str = "pacs"  # a stable word per class, for a browser's answer


class PacsConfigError(PacsError):
    """A PACS address, credential file or limit that cannot be used."""

    code: str = ErrorCode.BAD_REQUEST
    kind = "config"


class PacsUnreachable(PacsError):
    """No connection to the PACS (refused, no route, name unknown, TLS failed)."""

    kind = "unreachable"


REFUSED_CREDENTIALS = "the PACS refused medviz's credentials"
"""How every PacsUnauthorized message starts, so a browser's answer and the CLI's line read alike."""


class PacsUnauthorized(PacsError):
    """The PACS refused medviz's credentials (HTTP 401 or 403). Not medviz's own token: code `error`."""

    kind = "unauthorized"


class PacsNotFound(PacsError):
    """The PACS does not hold the study, series or instance asked for (HTTP 404)."""

    code: str = ErrorCode.NOT_FOUND
    kind = "not_found"


class PacsTimeout(PacsError):
    """The PACS did not answer, or not all of its answer, within a timeout."""

    kind = "timeout"


class PacsTooLarge(PacsError):
    """An answer (or an instance in it) larger than its limit: reading stopped there, nothing of it was used."""

    code: str = ErrorCode.TOO_LARGE
    kind = "too_large"


class PacsBadAnswer(PacsError):
    """An answer that is not what DICOMweb promises: a status, a type, a value or a UID that does not fit."""

    kind = "bad_answer"


class PacsQueryError(PacsError):
    """A search or a UID from the user that medviz does not send to a PACS."""

    code: str = ErrorCode.BAD_REQUEST
    kind = "bad_query"


class PacsUnverifiedSource(PacsQueryError):
    """A send refused because the source's patient cannot be verified: the source image's header, or the PACS's
    study for that image, names no PatientID (an empty one on either side would match a forged one)."""

    kind = "unverified_source"


class PacsNoImages(PacsError):
    """A study (or series) with no instance medviz can read: only non-image objects, or only multi-frame images."""

    code: str = ErrorCode.BAD_IMAGE
    kind = "no_images"


class PacsStorePartial(PacsError):
    """A STOW-RS store the PACS refused, wholly or in part; the message names each refused object and why."""

    kind = "store_partial"
