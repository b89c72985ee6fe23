"""Uploaded file bytes -> the RGB uint8 picture the model's processor gets, with limits.

Owns: recognising PNG, JPEG and DICOM by their bytes (`sniff_format`), decoding them
into an (H, W, 3) uint8 RGB array (`load_image`), the pixel limit that refuses
decompression bombs before any pixel is decoded, and the lossless PNG of that array
that viewers are shown (`image_to_png`). Does not own: resizing or normalising for the
model (the processor does that), HTTP upload limits, or how errors reach a user.

Choices, so the picture is what a radiologist would see:
- Gray images become R == G == B. 8-bit gray passes through unchanged.
- 16-bit (and 32-bit) gray is windowed to 8 bits by min-max of the actual pixel range
  (lowest value -> 0, highest -> 255, rounded), not truncated to its high or low byte:
  real X-rays rarely use the full 16-bit range, so truncation gives a black picture.
  A constant image becomes all zeros.
- Alpha (LA, RGBA, P with transparency) is composited over black, the background of
  an X-ray; X-ray PNGs saved as RGBA have alpha 255 and come out unchanged.
- JPEG EXIF orientation is applied, as browsers do.
- DICOM: Modality LUT (rescale slope/intercept), then the VOI LUT or the first window
  center/width when present, mapped from pydicom's output range to 0..255; without a
  VOI, min-max. MONOCHROME1 is inverted so bone is bright. Multi-frame: first frame.
  RGB / YBR photometrics pass through as RGB. Presentation LUT Shape is ignored.
- Pillow's own decompression-bomb check is not relied on (the image plugin is built
  directly, which reads only the header); our check against `max_pixels` runs first,
  and any Pillow or pydicom exception, DecompressionBombError included, becomes an
  ImageError. No Pillow or pydicom global setting is changed.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin

from .errors import ImageError

MAX_PIXELS = 50_000_000
EXPECTED = "a PNG, JPEG or DICOM image"

Format = Literal["png", "jpeg", "dicom", "pdf", "gif", "bmp", "tiff", "webp", "jpeg2000", "zip", "gzip"]

# Leading bytes -> format. "dicom" is found by its "DICM" marker at offset 128 instead.
MAGIC: tuple[tuple[bytes, Format], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"%PDF", "pdf"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),
    (b"PK\x03\x04", "zip"),
    (b"\x1f\x8b", "gzip"),
)
NAMES: dict[str, str] = {
    "png": "PNG",
    "jpeg": "JPEG",
    "pdf": "PDF document",
    "gif": "GIF image",
    "bmp": "BMP image",
    "tiff": "TIFF image",
    "webp": "WebP image",
    "jpeg2000": "JPEG 2000 image",
    "zip": "ZIP archive",
    "gzip": "gzip archive",
}
# Transfer syntax UID prefix -> the packages that let pydicom decode it.
DECODER_PACKAGES: tuple[tuple[str, str], ...] = (
    ("1.2.840.10008.1.2.4.9", "pip install pylibjpeg pylibjpeg-openjpeg"),  # JPEG 2000
    ("1.2.840.10008.1.2.4.20", "pip install pylibjpeg pylibjpeg-openjpeg"),  # HTJ2K
    ("1.2.840.10008.1.2.4.8", "pip install pylibjpeg pylibjpeg-libjpeg"),  # JPEG-LS
    ("1.2.840.10008.1.2.4.", "pip install pylibjpeg pylibjpeg-libjpeg"),  # JPEG
)


def sniff_format(data: bytes) -> Format:
    """The container format named by the leading bytes; ImageError when none is known."""
    if not data:
        raise ImageError(f"empty file: got 0 bytes; expected {EXPECTED}")
    if data[128:132] == b"DICM":
        return "dicom"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in MAGIC:
        if data.startswith(magic):
            return name
    raise ImageError(f"not {EXPECTED}: starts with {data[:8]!r}")


def load_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """File bytes -> (H, W, 3) uint8 RGB. ImageError for anything unreadable or too large."""
    try:
        kind = sniff_format(data)
    except ImageError:
        if not data or not _looks_like_headerless_dicom(data):
            raise
        kind = "dicom"
    if kind in ("png", "jpeg"):
        return _load_pillow(data, kind, max_pixels)
    if kind == "dicom":
        return _load_dicom(data, max_pixels)
    raise ImageError(f"not {EXPECTED}: got a {NAMES[kind]}")


def image_to_png(rgb: np.ndarray) -> bytes:
    """The lossless PNG of an (H, W, 3) uint8 RGB array: exactly what the processor got.

    A gray picture (R == G == B everywhere, as X-rays are) is written as an 8-bit gray PNG:
    the same pixels once decoded, about a third of the bytes in every start frame and
    recording.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"image_to_png needs a uint8 (H, W, 3) array; got {rgb.dtype} {rgb.shape}")
    out = io.BytesIO()
    gray = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    picture = Image.fromarray(np.ascontiguousarray(rgb[..., 0] if gray else rgb))
    picture.save(out, format="PNG")
    return out.getvalue()


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse a declared size over the limit, before any pixel is decoded."""
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(f"image is {width} x {height} = {pixels} pixels; the limit is {max_pixels}")


# --- PNG / JPEG ---------------------------------------------------------------------


def _load_pillow(data: bytes, kind: Format, max_pixels: int) -> np.ndarray:
    factory = PngImagePlugin.PngImageFile if kind == "png" else JpegImagePlugin.JpegImageFile
    damaged = f"the {NAMES[kind]} file is truncated or damaged"
    try:
        # The plugin reads only the header here; Image.open would add Pillow's own bomb check.
        picture: Image.Image = factory(io.BytesIO(data))
    except Exception as error:  # any Pillow failure is a bad file
        raise ImageError(damaged) from error
    check_pixels(picture.width, picture.height, max_pixels)
    try:
        picture.load()
        if kind == "jpeg":
            picture = ImageOps.exif_transpose(picture)
        return pillow_to_rgb(picture)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"Pillow refused the {NAMES[kind]} as a decompression bomb: {error}") from error
    except Exception as error:  # OSError (truncated), SyntaxError, zlib errors ...
        raise ImageError(damaged) from error


def pillow_to_rgb(picture: Image.Image) -> np.ndarray:
    """A decoded Pillow image in any mode -> (H, W, 3) uint8 RGB, by the choices above."""
    mode = picture.mode
    if mode == "1":
        picture, mode = picture.convert("L"), "L"
    elif mode in ("P", "PA"):
        picture, mode = picture.convert("RGBA"), "RGBA"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _gray_to_rgb(window_min_max(np.asarray(picture)))
    if mode == "L":
        return _gray_to_rgb(np.asarray(picture))
    if mode == "LA":
        pixels = np.asarray(picture)
        return _gray_to_rgb(_over_black(pixels[..., 0], pixels[..., 1]))
    if mode == "RGBA":
        pixels = np.asarray(picture)
        return _over_black(pixels[..., :3], pixels[..., 3:4])
    if mode != "RGB":
        picture = picture.convert("RGB")  # CMYK, YCbCr, RGBX ...
    return np.ascontiguousarray(np.asarray(picture), dtype=np.uint8)


def _over_black(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over black, rounded: alpha 255 keeps the colour exactly."""
    mixed = (colour.astype(np.uint32) * alpha.astype(np.uint32) + 127) // 255
    return mixed.astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2))


def window_min_max(values: np.ndarray) -> np.ndarray:
    """Any numeric array -> uint8: its lowest value -> 0, highest -> 255, rounded."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return _to_uint8(values, low, high)


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (values.astype(np.float64) - low) * 255.0 / (high - low)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# --- DICOM --------------------------------------------------------------------------


def _looks_like_headerless_dicom(data: bytes) -> bool:
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


def _load_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    dataset = _read_dicom(data, force=data[128:132] != b"DICM")
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
        return _gray_to_rgb(255 - gray if photometric == "MONOCHROME1" else gray)
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
    """Modality LUT, then VOI LUT or window mapped from pydicom's output range, else min-max."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    try:
        values = apply_modality_lut(pixels, dataset)
        if "VOILUTSequence" in dataset:
            low, high = 0.0, float(2 ** int(dataset.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        elif "WindowCenter" in dataset and "WindowWidth" in dataset:
            low, high = _window_output_range(dataset)
        else:
            return window_min_max(values)
        return _to_uint8(apply_voi_lut(values, dataset), low, high)
    except Exception as error:  # malformed LUT or window values
        raise ImageError("the DICOM Modality or VOI LUT could not be applied") from error


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
