"""Uploaded file bytes -> the RGB uint8 picture the model's processor gets, with limits.

Owns: deciding which loader reads the bytes (`image_kind`: PNG, JPEG or DICOM), decoding
them into an (H, W, 3) uint8 RGB array (`load_image`: PNG and JPEG here, DICOM in imaging/dicom.py),
the limits that refuse decompression bombs before any pixel is decoded (pixels, and decoded
bytes: width x height x channels x bytes per sample, read from the header by
imaging/headers.py), and the lossless PNG of that array that viewers are shown
(`image_to_png`). Does not own: the format sniffing and the gray and windowing helpers both
loaders use (imaging/pixels.py), resizing or normalising for the model (the processor does that),
HTTP upload limits, how much decoding a server runs at once (server/guard/image_budget.py), or
how errors reach a user.

Choices, so the picture is what a radiologist would see:
- Gray images become R == G == B. 8-bit gray passes through unchanged.
- 16-bit (and 32-bit) gray is windowed to 8 bits by min-max of the actual pixel range
  (lowest value -> 0, highest -> 255, rounded), not truncated to its high or low byte:
  real X-rays rarely use the full 16-bit range, so truncation gives a black picture.
  A constant image becomes all zeros.
- Alpha (LA, RGBA, P with transparency) is composited over black, the background of
  an X-ray; X-ray PNGs saved as RGBA have alpha 255 and come out unchanged.
- JPEG EXIF orientation is applied, as browsers do.
- DICOM (imaging/dicom.py): Modality LUT (rescale slope/intercept), then the VOI LUT or the first
  window center/width when present, mapped from pydicom's output range to 0..255; without
  a VOI, min-max. MONOCHROME1 is inverted so bone is bright. Multi-frame: first frame.
  RGB / YBR photometrics pass through as RGB. Presentation LUT Shape is ignored.
- Pillow's own decompression-bomb check is not relied on (the image plugin is built
  directly, which reads only the header); our check against `max_pixels` runs first,
  and any Pillow or pydicom exception, DecompressionBombError included, becomes an
  ImageError. No Pillow or pydicom global setting is changed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin

from medviz_core.errors import ImageError
from medviz_core.imaging.dicom import dicom_to_rgb, looks_like_headerless_dicom, read_dicom
from medviz_core.imaging.headers import ImageHeader, check_jpeg_scan, dicom_dataset_header, read_header
from medviz_core.imaging.pixels import EXPECTED, NAMES, Format, check_pixels, gray_to_rgb, sniff_format, window_min_max

MAX_PIXELS = 50_000_000
MAX_DECODED_BYTES = 256 * 1024 * 1024  # width x height x channels x bytes per sample, per image


def image_kind(data: bytes) -> Format:
    """png, jpeg or dicom (a DICOM without preamble too); ImageError for any other bytes."""
    try:
        kind = sniff_format(data)
    except ImageError:
        if not data or not looks_like_headerless_dicom(data):
            raise
        kind = "dicom"
    if kind not in ("png", "jpeg", "dicom"):
        raise ImageError(f"not {EXPECTED}: got a {NAMES[kind]}")
    return kind


def image_header(data: bytes, *, max_pixels: int = MAX_PIXELS,
                 max_decoded_bytes: int = MAX_DECODED_BYTES) -> ImageHeader:
    """The file's declared size and sample layout, checked against both limits; no pixel is decoded."""
    return _checked_header(data, image_kind(data), max_pixels, max_decoded_bytes)


def load_image(data: bytes, *, max_pixels: int = MAX_PIXELS, max_decoded_bytes: int = MAX_DECODED_BYTES,
               checked: ImageHeader | None = None) -> np.ndarray:
    """File bytes -> (H, W, 3) uint8 RGB. ImageError for anything unreadable or too large.

    `checked`: the header `image_header` already read and checked for these bytes (admission), so it is not
    read again. A DICOM is read once: the dataset's header is checked before any pixel is decoded.
    """
    kind = image_kind(data) if checked is None else checked.kind
    if kind == "dicom":
        dataset = read_dicom(data)
        if checked is None:
            _check_limits(dicom_dataset_header(dataset), max_pixels, max_decoded_bytes)
        return dicom_to_rgb(dataset, max_pixels)
    pillow: Format = "png" if kind == "png" else "jpeg"
    if checked is None:
        _checked_header(data, pillow, max_pixels, max_decoded_bytes)
    return _load_pillow(data, pillow, max_pixels)


def _checked_header(data: bytes, kind: Format, max_pixels: int, max_decoded_bytes: int) -> ImageHeader:
    header = _check_limits(read_header(data, kind), max_pixels, max_decoded_bytes)
    if header.kind == "jpeg":
        check_jpeg_scan(data, header)
    return header


def _check_limits(header: ImageHeader, max_pixels: int, max_decoded_bytes: int) -> ImageHeader:
    check_pixels(header.width, header.height, max_pixels)
    if header.decoded_bytes > max_decoded_bytes:
        raise ImageError(f"image would decode to {header.describe()}; the limit is {max_decoded_bytes} bytes")
    return header


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
        return pillow_to_rgb(picture, release=True)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"Pillow refused the {NAMES[kind]} as a decompression bomb: {error}") from error
    except Exception as error:  # OSError (truncated), SyntaxError, zlib errors ...
        raise ImageError(damaged) from error


def pillow_to_rgb(picture: Image.Image, release: bool = False) -> np.ndarray:
    """A decoded Pillow image in any mode -> (H, W, 3) uint8 RGB, by the choices above.

    `release`: close the picture once its pixels are taken (the caller holds no other use).
    """
    mode = picture.mode
    if mode == "1":
        picture, mode = picture.convert("L"), "L"
    elif mode in ("P", "PA"):
        picture, mode = picture.convert("RGBA"), "RGBA"
    elif mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F", "L", "LA", "RGBA", "RGB"):
        picture, mode = picture.convert("RGB"), "RGB"  # CMYK, YCbCr, RGBX ...
    pixels = np.asarray(picture)
    if release:
        picture.close()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return gray_to_rgb(window_min_max(pixels))
    if mode == "L":
        return gray_to_rgb(pixels)
    if mode == "LA":
        return gray_to_rgb(_over_black(pixels[..., 0], pixels[..., 1]))
    if mode == "RGBA":
        return _over_black(pixels[..., :3], pixels[..., 3:4])
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _over_black(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over black, rounded: alpha 255 keeps the colour exactly (16-bit work, in place)."""
    if bool((alpha == 255).all()):
        return np.ascontiguousarray(colour, dtype=np.uint8)
    mixed = colour.astype(np.uint16)  # 255 * 255 + 127 fits in 16 bits
    mixed *= alpha
    mixed += 127
    mixed //= 255
    return mixed.astype(np.uint8)
