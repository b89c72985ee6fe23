"""imaging: uploaded bytes -> the RGB uint8 picture the processor gets, with limits and typed errors."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medviz_core.errors import ImageError
from medviz_core.imaging.load import image_to_png, load_image, pillow_to_rgb, sniff_format

SHAPES = {
    "nih_00000001_000.png": (1024, 1024, 3),
    "nih_00000003_001.png": (1024, 1024, 3),
    "nih_00000004_000_rgba.png": (1024, 1024, 3),
    "nih_00027426_000_512.png": (512, 512, 3),
    "nih_00000002_000_dx.dcm": (1024, 1024, 3),
    "commons_haggstrom_normal_pa.jpg": (899, 786, 3),
}


def png_bytes(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_dicom(pixels: np.ndarray, *, syntax: Any = None, preamble: bool = True, **tags: Any) -> bytes:
    """A minimal Secondary Capture DICOM holding `pixels` (uncompressed unless PixelData is given)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[-2], pixels.shape[-1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue() if preamble else out.getvalue()[132:]


def gray_of(rgb: np.ndarray) -> np.ndarray:
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    return rgb[..., 0]


# --- the sample X-rays -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_sample_xray_loads_as_gray_rgb_of_its_stored_size(cxr_dir: Path, name: str) -> None:
    rgb = load_image((cxr_dir / name).read_bytes())
    assert rgb.dtype == np.uint8
    assert rgb.shape == SHAPES[name]
    gray_of(rgb)


def test_the_samples_are_recognised_by_their_bytes(cxr_dir: Path) -> None:
    kinds = {name: sniff_format((cxr_dir / name).read_bytes()) for name in sorted(SHAPES)}
    assert kinds == {
        "commons_haggstrom_normal_pa.jpg": "jpeg",
        "nih_00000001_000.png": "png",
        "nih_00000002_000_dx.dcm": "dicom",
        "nih_00000003_001.png": "png",
        "nih_00000004_000_rgba.png": "png",
        "nih_00027426_000_512.png": "png",
    }


def test_an_8bit_gray_png_passes_through_unchanged(cxr_dir: Path, sample_bytes: bytes) -> None:
    stored = np.asarray(Image.open(io.BytesIO(sample_bytes)))
    assert np.array_equal(gray_of(load_image(sample_bytes)), stored)


def test_an_rgba_xray_loads_equal_to_its_gray_channel(cxr_dir: Path) -> None:
    data = (cxr_dir / "nih_00000004_000_rgba.png").read_bytes()
    stored = np.asarray(Image.open(io.BytesIO(data)))
    assert stored.shape == (1024, 1024, 4) and int(stored[..., 3].min()) == 255
    assert np.array_equal(gray_of(load_image(data)), stored[..., 0])


def test_the_dicom_sample_without_a_window_is_min_max_windowed(cxr_dir: Path) -> None:
    import pydicom

    path = cxr_dir / "nih_00000002_000_dx.dcm"
    stored = pydicom.dcmread(path).pixel_array
    assert (int(stored.min()), int(stored.max())) == (0, 252)
    expected = np.rint(stored.astype(np.float64) * 255 / 252).astype(np.uint8)
    assert np.array_equal(gray_of(load_image(path.read_bytes())), expected)


def test_a_dicom_without_preamble_is_read_when_no_other_format_matches(cxr_dir: Path) -> None:
    data = (cxr_dir / "nih_00000002_000_dx.dcm").read_bytes()
    assert np.array_equal(load_image(data[132:]), load_image(data))


# --- Pillow modes ------------------------------------------------------------------------


def test_a_16bit_png_made_from_an_8bit_one_loads_equal_to_it(sample_bytes: bytes) -> None:
    eight = np.asarray(Image.open(io.BytesIO(sample_bytes)))
    sixteen = Image.fromarray(eight.astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    assert np.array_equal(gray_of(load_image(png_bytes(sixteen))), eight)


def test_16bit_gray_is_windowed_by_its_actual_range_not_truncated() -> None:
    values = np.array([[1000, 1100], [1200, 1255]], dtype=np.uint16)
    assert gray_of(load_image(png_bytes(Image.fromarray(values)))).tolist() == [[0, 100], [200, 255]]


def test_big_endian_16bit_and_32bit_gray_are_windowed_by_min_max() -> None:
    big = Image.frombytes("I;16B", (3, 1), np.array([0, 300, 600], dtype=">u2").tobytes())
    wide = Image.fromarray(np.array([[-10, 0, 40]], dtype=np.int32))
    assert wide.mode == "I"
    assert gray_of(pillow_to_rgb(big)).tolist() == [[0, 128, 255]]
    assert gray_of(pillow_to_rgb(wide)).tolist() == [[0, 51, 255]]


def test_a_constant_16bit_image_becomes_black() -> None:
    flat = Image.fromarray(np.full((2, 2), 777, dtype=np.uint16))
    assert load_image(png_bytes(flat)).tolist() == [[[0, 0, 0]] * 2] * 2


def test_alpha_is_composited_over_black() -> None:
    gray_alpha = Image.fromarray(np.array([[[200, 255], [200, 128], [200, 0]]], dtype=np.uint8), "LA")
    rgba = Image.fromarray(np.array([[[10, 20, 30, 255], [255, 100, 0, 51]]], dtype=np.uint8), "RGBA")
    assert load_image(png_bytes(gray_alpha)).tolist() == [[[200] * 3, [100] * 3, [0] * 3]]
    assert load_image(png_bytes(rgba)).tolist() == [[[10, 20, 30], [51, 20, 0]]]


def test_palette_and_bilevel_pngs_become_rgb() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 250, 128, 3] + [0] * 762)
    palette.putpixel((1, 0), 1)
    bilevel = Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1")
    assert load_image(png_bytes(palette)).tolist() == [[[0, 0, 0], [250, 128, 3]]]
    assert load_image(png_bytes(bilevel)).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_a_cmyk_jpeg_becomes_rgb() -> None:
    out = io.BytesIO()
    Image.new("CMYK", (16, 8), (0, 0, 0, 0)).save(out, format="JPEG", quality=100)
    rgb = load_image(out.getvalue())
    assert rgb.shape == (8, 16, 3)
    assert int(rgb.min()) >= 250  # no ink is white


def test_jpeg_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    picture = Image.new("L", (40, 10), 0)
    picture.paste(255, (0, 0, 8, 10))  # a white band on the stored left edge
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=100, exif=exif)
    gray = gray_of(load_image(out.getvalue()))
    assert gray.shape == (40, 10)
    assert int(gray[:4].min()) >= 200 and int(gray[-4:].max()) <= 55  # the band is now on top


# --- DICOM ---------------------------------------------------------------------------


def test_monochrome1_is_inverted_so_bone_is_bright() -> None:
    pixels = np.array([[0, 64], [128, 255]], dtype=np.uint8)
    data = make_dicom(pixels, PhotometricInterpretation="MONOCHROME1")
    assert gray_of(load_image(data)).tolist() == [[255, 191], [127, 0]]


def test_rescale_then_window_center_and_width_are_applied() -> None:
    # 12-bit CT-like values: HU = 2 * raw - 1024; window 0 +- 200 (LINEAR, PS3.3 C.11.2.1.2):
    # y = ((HU - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped; HU -100 -> 63.91, 0 -> 127.82, 100 -> 191.73
    raw = np.array([[312, 412, 462], [512, 562, 4095]], dtype=np.uint16)
    data = make_dicom(raw, BitsStored=12, HighBit=11, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=400)
    assert gray_of(load_image(data)).tolist() == [[0, 0, 64], [128, 192, 255]]


def test_without_a_window_the_rescaled_values_are_min_max_windowed() -> None:
    raw = np.array([[100, 200, 300]], dtype=np.uint16)
    data = make_dicom(raw, RescaleSlope=-1, RescaleIntercept=0)
    assert gray_of(load_image(data)).tolist() == [[255, 128, 0]]


def test_min_max_after_rescale_spans_every_block_of_rows() -> None:
    raw = np.zeros((1100, 2), dtype=np.uint16)
    raw[3, 0], raw[1099, 1] = 1000, 3000  # the extremes sit in the first and the third block of rows
    data = make_dicom(raw, RescaleSlope=-1, RescaleIntercept=0)
    gray = gray_of(load_image(data))
    assert (int(gray[3, 0]), int(gray[1099, 1]), int(gray[500, 0])) == (170, 0, 255)


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_a_dicom_whose_rescale_slope_is_nan_is_a_bad_image_not_a_garbage_picture() -> None:
    data = make_dicom(np.array([[1, 2], [3, 4]], dtype=np.uint16), RescaleSlope="NaN", RescaleIntercept=0)
    with pytest.raises(ImageError) as error:
        load_image(data)
    assert str(error.value) == "the DICOM RescaleSlope is NaN; expected a finite number"


def test_a_dicom_whose_rescaled_values_overflow_to_infinity_is_a_bad_image() -> None:
    data = make_dicom(np.array([[1, 60000]], dtype=np.uint16), RescaleSlope="1e305", RescaleIntercept=0)
    with pytest.raises(ImageError) as error:
        load_image(data)
    assert str(error.value) == "the DICOM pixel values are not finite after its Modality LUT; expected finite numbers"


def test_a_multiframe_dicom_gives_its_first_frame() -> None:
    frames = np.array([[[1, 2], [3, 4]], [[9, 9], [9, 9]]], dtype=np.uint8)
    data = make_dicom(frames, NumberOfFrames=2)
    assert gray_of(load_image(data)).tolist() == [[0, 85], [170, 255]]


def test_an_rgb_dicom_passes_through() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    data = make_dicom(rgb[..., 0], SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0, PixelData=rgb.tobytes())
    assert np.array_equal(load_image(data), rgb)


def test_a_compressed_dicom_without_a_decoder_names_the_syntax_and_what_to_install() -> None:
    from pydicom.encaps import encapsulate
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    pixels = np.zeros((2, 2), dtype=np.uint8)
    data = make_dicom(pixels, syntax=JPEGLSLossless, PixelData=encapsulate([b"\xff\xd8\xff\xf7\x00"]))
    with pytest.raises(ImageError) as error:
        load_image(data)
    assert str(error.value) == (
        "cannot decode DICOM pixel data in JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80): "
        "no decoder is installed; install one with `pip install pylibjpeg pylibjpeg-libjpeg` (or `pip install python-gdcm`)"
    )


# --- limits and bad input ---------------------------------------------------------------


def test_a_png_declaring_100000_squared_pixels_is_refused_before_decoding() -> None:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\x00")) + png_chunk(b"IEND", b"")
    with pytest.raises(ImageError) as error:
        load_image(data)
    assert str(error.value) == "image is 100000 x 100000 = 10000000000 pixels; the limit is 50000000"


def test_the_pixel_limit_applies_to_jpeg_and_dicom_headers(cxr_dir: Path) -> None:
    with pytest.raises(ImageError) as jpeg:
        load_image((cxr_dir / "commons_haggstrom_normal_pa.jpg").read_bytes(), max_pixels=700_000)
    with pytest.raises(ImageError) as dicom:
        load_image((cxr_dir / "nih_00000002_000_dx.dcm").read_bytes(), max_pixels=1_000_000)
    assert str(jpeg.value) == "image is 786 x 899 = 706614 pixels; the limit is 700000"
    assert str(dicom.value) == "image is 1024 x 1024 = 1048576 pixels; the limit is 1000000"


def test_a_16bit_rgba_png_over_the_decoded_bytes_limit_is_refused_from_its_header() -> None:
    header = struct.pack(">IIBBBBB", 7071, 7071, 16, 6, 0, 0, 0)  # 16-bit RGBA, under the pixel limit
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\x00")) + png_chunk(b"IEND", b"")
    with pytest.raises(ImageError) as error:
        load_image(data)
    assert str(error.value) == ("image would decode to 7071 x 7071 x 4 channel(s) x 2 byte(s) = 399992328 bytes; "
                                "the limit is 268435456 bytes")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A whole 16 x 16 JPEG whose frame header is rewritten to claim width x height."""
    out = io.BytesIO()
    Image.new("L", (16, 16), 128).save(out, format="JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def test_a_333_byte_jpeg_claiming_7000_squared_pixels_is_a_bad_image_not_a_grey_picture() -> None:
    data = jpeg_claiming(7000, 7000)
    with pytest.raises(ImageError) as error:
        load_image(data)
    assert len(data) == 333
    assert str(error.value) == ("the JPEG header declares 7000 x 7000 pixels but holds 5 bytes of image data; "
                                "a whole picture of that size needs at least 95704")


def test_a_flat_progressive_optimised_jpeg_still_loads() -> None:
    out = io.BytesIO()
    Image.new("L", (2000, 1500), 90).save(out, format="JPEG", optimize=True, progressive=True)
    assert gray_of(load_image(out.getvalue())).shape == (1500, 2000)


def test_a_pillow_decompression_bomb_error_becomes_an_image_error(sample_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import PngImagePlugin

    def refuse(self: Any) -> None:
        raise Image.DecompressionBombError("Image size (1048576 pixels) exceeds limit of 1000 pixels")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse)
    with pytest.raises(ImageError) as error:
        load_image(sample_bytes)
    assert str(error.value) == (
        "Pillow refused the PNG as a decompression bomb: Image size (1048576 pixels) exceeds limit of 1000 pixels"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file: got 0 bytes; expected a PNG, JPEG or DICOM image"),
        (b"just some notes\n", "not a PNG, JPEG or DICOM image: starts with b'just som'"),
        (bytes(range(250, 256)) + bytes(64), "not a PNG, JPEG or DICOM image: starts with b'\\xfa\\xfb\\xfc\\xfd\\xfe\\xff\\x00\\x00'"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "not a PNG, JPEG or DICOM image: got a PDF document"),
        (b"GIF89a" + bytes(20), "not a PNG, JPEG or DICOM image: got a GIF image"),
        (b"\x89PNG\r\n\x1a\n", "the PNG file is truncated or damaged"),
        (b"\xff\xd8\xff\xe0garbage", "the JPEG file is truncated or damaged"),
    ],
    ids=["empty", "text", "random", "pdf", "gif", "png-signature-only", "jpeg-garbage"],
)
def test_bad_bytes_give_an_image_error_saying_what_came(data: bytes, message: str) -> None:
    with pytest.raises(ImageError) as error:
        load_image(data)
    assert str(error.value) == message


def test_a_png_cut_short_in_its_pixel_data_is_refused(sample_bytes: bytes) -> None:
    with pytest.raises(ImageError) as error:
        load_image(sample_bytes[: len(sample_bytes) // 2])
    assert str(error.value) == "the PNG file is truncated or damaged"


def test_a_dicom_without_pixel_data_is_refused() -> None:
    data = make_dicom(np.zeros((2, 2), dtype=np.uint8))
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(data))
    del dataset.PixelData
    out = io.BytesIO()
    dataset.save_as(out)
    with pytest.raises(ImageError) as error:
        load_image(out.getvalue())
    assert str(error.value) == "the DICOM file has no pixel data: (7FE0,0010) Pixel Data is missing"


def test_a_dicom_cut_short_in_its_pixel_data_is_refused(cxr_dir: Path) -> None:
    data = (cxr_dir / "nih_00000002_000_dx.dcm").read_bytes()
    with pytest.raises(ImageError) as error:
        load_image(data[:-1000])
    assert str(error.value) == "the DICOM pixel data in Implicit VR Little Endian could not be decoded"


# --- the PNG viewers are shown -----------------------------------------------------------


def test_image_to_png_round_trips_exactly(cxr_dir: Path) -> None:
    rgb = load_image((cxr_dir / "commons_haggstrom_normal_pa.jpg").read_bytes())
    noisy = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    for picture in (rgb, noisy):
        assert np.array_equal(load_image(image_to_png(picture)), picture)


def test_image_to_png_refuses_what_is_not_uint8_rgb() -> None:
    with pytest.raises(ImageError) as error:
        image_to_png(np.zeros((4, 4), dtype=np.float32))
    assert str(error.value) == "image_to_png needs a uint8 (H, W, 3) array; got float32 (4, 4)"


def test_a_gray_picture_becomes_a_smaller_gray_png_with_the_same_pixels(cxr_dir: Path) -> None:
    rgb = load_image((cxr_dir / "nih_00000001_000.png").read_bytes())
    png = image_to_png(rgb)
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.mode == "L"
    assert np.array_equal(load_image(png), rgb)
    color = rgb.copy()
    color[0, 0] = (255, 0, 0)
    with Image.open(io.BytesIO(image_to_png(color))) as picture:
        assert picture.mode == "RGB"
    assert len(png) < len(image_to_png(color)) * 0.75
