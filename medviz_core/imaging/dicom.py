"""DICOM bytes -> the RGB uint8 picture the processor gets (imaging/load.py's choices, for DICOM).

Owns: recognising a DICOM without its preamble (`looks_like_headerless_dicom`), reading the
dataset, decoding the first frame with pydicom (and saying which package to install when
no decoder is), the Modality LUT, then the VOI LUT or window mapped from pydicom's output
range (else min-max), a block of rows at a time, and the refusal of anything not finite on
the way (RescaleSlope NaN, a LUT that overflows). Does not own sniffing formats or the pixel
helpers (imaging/pixels.py, the only medviz module it imports besides errors), the pixel limit's value
or PNG output (imaging/load.py, which imports this module).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from medviz_core.errors import ImageError
from medviz_core.imaging.pixels import ROW_BLOCK, check_pixels, gray_to_rgb, sniff_format, to_uint8, window_min_max

# Transfer syntax UID prefix -> the packages that let pydicom decode it.
DECODER_PACKAGES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.1.2.4.9", "pip install pylibjpeg pylibjpeg-openjpeg"),  # JPEG 2000
    ("1.2.840.10008.1.2.4.20", "pip install pylibjpeg pylibjpeg-openjpeg"),  # HTJ2K
    ("1.2.840.10008.1.2.4.8", "pip install pylibjpeg pylibjpeg-libjpeg"),  # JPEG-LS
    ("1.2.840.10008.1.2.4.", "pip install pylibjpeg pylibjpeg-libjpeg"),  # JPEG
)


def looks_like_headerless_dicom(data: bytes) -> bool:
    """A DICOM without preamble starts with a group 0x0002 or 0x0008 tag; pydicom must agree."""
    if int.from_bytes(data[:2], "little") not in (0x0002, 0x0008):
        return False
    try:
        _read_dicom(data, force=True)
    except ImageError:
        return False
    return True


def _read_dicom(data: bytes, *, force: bool) -> Any:
    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=force)
        if "TransferSyntaxUID" not in dataset.file_meta:
            implicit, little = dataset.original_encoding
            dataset.file_meta.TransferSyntaxUID = _plain_syntax(implicit, little)
        return dataset
    except Exception as error:  # any pydicom failure is a bad file
        raise ImageError("the DICOM file is truncated or damaged") from error


def _plain_syntax(implicit: bool | None, little: bool | None) -> Any:
    from pydicom import uid

    if implicit:
        return uid.ImplicitVRLittleEndian
    return uid.ExplicitVRLittleEndian if little or little is None else uid.ExplicitVRBigEndian


def read_dicom(data: bytes) -> Any:
    """The dataset, pixel data still encoded (ImageError if pydicom cannot read it): one read serves the
    header check and the decode (imaging.load_image)."""
    return _read_dicom(data, force=data[128:132] != b"DICM")


def dicom_to_rgb(dataset: Any, max_pixels: int) -> np.ndarray:
    """A dataset's first frame -> (H, W, 3) uint8 RGB, by imaging/load.py's choices."""
    if not any(key in dataset for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageError("the DICOM file has no pixel data: (7FE0,0010) Pixel Data is missing")
    rows, columns = dataset.get("Rows"), dataset.get("Columns")
    if not rows or not columns:
        raise ImageError(f"the DICOM file has no image size: Rows={rows}, Columns={columns}")
    check_pixels(int(columns), int(rows), max_pixels)
    pixels = _decode_first_frame(dataset)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("MONOCHROME"):
        gray = _dicom_gray_to_uint8(pixels, dataset)
        return gray_to_rgb(255 - gray if photometric == "MONOCHROME1" else gray)
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT") and pixels.ndim == 3:
        return np.ascontiguousarray(pixels if pixels.dtype == np.uint8 else window_min_max(pixels))
    raise ImageError(
        f"DICOM photometric interpretation {photometric} is not supported; expected MONOCHROME1, MONOCHROME2 or RGB"
    )


def _decode_first_frame(dataset: Any) -> np.ndarray:
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.pixels.utils import pixel_array

    syntax = dataset.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except Exception as error:  # NotImplementedError for syntaxes pydicom has no decoder for
        raise ImageError(f"DICOM transfer syntax {syntax.name} ({syntax}) is not supported by pydicom") from error
    if not decoder.is_available:
        packages = (cmd for prefix, cmd in DECODER_PACKAGES if str(syntax).startswith(prefix))
        install = next(packages, "pip install python-gdcm")
        raise ImageError(
            f"cannot decode DICOM pixel data in {syntax.name} ({syntax}): no decoder is installed; "
            f"install one with `{install}` (or `pip install python-gdcm`)"
        )
    try:
        return np.asarray(pixel_array(dataset, index=0))
    except Exception as error:  # short pixel data, a plugin failure ...
        raise ImageError(f"the DICOM pixel data in {syntax.name} could not be decoded") from error


def _dicom_gray_to_uint8(pixels: np.ndarray, dataset: Any) -> np.ndarray:
    """Modality LUT, then VOI LUT or window mapped from pydicom's output range, else min-max.

    Works a block of rows at a time (the LUTs give float64 values); a value that is not
    finite after the Modality or VOI LUT is an ImageError, never a garbage picture.
    """
    _check_finite_tags(dataset)
    blocks = [slice(start, start + ROW_BLOCK) for start in range(0, pixels.shape[0], ROW_BLOCK)]
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow shows as a non-finite value, refused below
        return _dicom_blocks_to_uint8(pixels, dataset, blocks)


def _dicom_blocks_to_uint8(pixels: np.ndarray, dataset: Any, blocks: list[slice]) -> np.ndarray:
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    try:
        def modality(rows: slice) -> np.ndarray:
            return _finite(apply_modality_lut(pixels[rows], dataset), "its Modality LUT")

        out = np.empty(pixels.shape, dtype=np.uint8)
        if "VOILUTSequence" in dataset or ("WindowCenter" in dataset and "WindowWidth" in dataset):
            if "VOILUTSequence" in dataset:
                low, high = 0.0, float(2 ** int(dataset.VOILUTSequence[0].LUTDescriptor[2]) - 1)
            else:
                low, high = _window_output_range(dataset)
            for rows in blocks:
                out[rows] = to_uint8(_finite(apply_voi_lut(modality(rows), dataset), "its VOI LUT or window"),
                                      low, high)
            return out
        ranges = [(float(v.min()), float(v.max())) for v in map(modality, blocks)]
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        if high <= low:
            return np.zeros(pixels.shape, dtype=np.uint8)
        for rows in blocks:
            out[rows] = to_uint8(modality(rows), low, high)
        return out
    except ImageError:
        raise
    except Exception as error:  # malformed LUT or window values
        raise ImageError("the DICOM Modality or VOI LUT could not be applied") from error


def _check_finite_tags(dataset: Any) -> None:
    """RescaleSlope, RescaleIntercept, WindowCenter and WindowWidth must be finite numbers when present."""
    from pydicom.multival import MultiValue

    for tag in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        value = dataset.get(tag)
        if value is None:
            continue
        try:
            finite = all(np.isfinite(float(v)) for v in (value if isinstance(value, MultiValue) else [value]))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ImageError(f"the DICOM {tag} is {str(value)[:40]}; expected a finite number")


def _finite(values: np.ndarray, where: str) -> np.ndarray:
    if values.dtype.kind == "f" and not bool(np.isfinite(values).all()):
        raise ImageError(f"the DICOM pixel values are not finite after {where}; expected finite numbers")
    return values


def _window_output_range(dataset: Any) -> tuple[float, float]:
    """The range pydicom's apply_windowing maps a window onto (PS3.3 C.11.2.1.2)."""
    if dataset.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2 ** int(dataset.BitsStored) - 1)
    else:
        low, high = float(-(2 ** (int(dataset.BitsStored) - 1))), float(2 ** (int(dataset.BitsStored) - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def dicom_header(data: bytes) -> bytes | None:
    """A DICOM file's header without its pixel data, as DICOM bytes (what an export references and copies);
    None when `data` is not DICOM. The image was checked by `imaging.load_image` first."""
    try:
        is_dicom = sniff_format(data) == "dicom" or looks_like_headerless_dicom(data)
    except ImageError:
        is_dicom = looks_like_headerless_dicom(data)
    if not is_dicom:
        return None
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=False)
    return out.getvalue()
