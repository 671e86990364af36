"""Reading user images safely (`open_image`, `to_rgb`) and writing outputs atomically."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from condiff.errors import DataError
from condiff.images import open_image, save_image_atomic, to_rgb, write_bytes_atomic

# ---------------------------------------------------------------------------------------------------
# open_image: every bad file becomes a one-line DataError naming the file
# ---------------------------------------------------------------------------------------------------


def _rejects(path, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        open_image(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message


def _write_png(path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def _png_with_header_size(path, width: int, height: int) -> None:
    """A tiny valid PNG whose IHDR claims `width` x `height` (with a correct CRC)."""
    _write_png(path, np.zeros((1, 1, 3), np.uint8))
    data = bytearray(path.read_bytes())
    # Bytes 8..: IHDR chunk = length (4), type (4), data (13: width, height, ...), CRC (4).
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_open_image_returns_loaded_image_in_original_mode(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    _write_png(tmp_path / "a.png", pixels)
    image = open_image(tmp_path / "a.png")
    assert image.mode == "RGBA" and image.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(image), pixels)


def test_missing_file_is_rejected(tmp_path):
    assert "not found" in _rejects(tmp_path / "nope.png")


def test_directory_is_rejected(tmp_path):
    assert "directory" in _rejects(tmp_path)


def test_empty_file_is_rejected(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in _rejects(tmp_path / "empty.png")


def test_text_file_named_png_is_rejected(tmp_path):
    (tmp_path / "notes.png").write_text("not really a picture\n")
    assert "not an image" in _rejects(tmp_path / "notes.png")


def test_truncated_png_is_rejected(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # incompressible
    _write_png(tmp_path / "full.png", noise)
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _rejects(tmp_path / "cut.png")


@pytest.mark.filterwarnings("error")  # Pillow's DecompressionBombWarning must not leak out either
@pytest.mark.parametrize("side", [9_000, 10_000, 30_000])  # under, between and over Pillow's own limits
def test_huge_header_is_rejected_before_decoding(tmp_path, monkeypatch, side):
    _png_with_header_size(tmp_path / "bomb.png", side, side)

    def decoding_is_forbidden(self):
        raise AssertionError("open_image decoded pixels of an oversized image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoding_is_forbidden)
    assert "downscale" in _rejects(tmp_path / "bomb.png")


def test_max_pixels_is_configurable(tmp_path):
    _write_png(tmp_path / "a.png", np.zeros((100, 100, 3), np.uint8))
    assert "over the limit" in _rejects(tmp_path / "a.png", max_pixels=9_999)
    assert open_image(tmp_path / "a.png", max_pixels=10_000).size == (100, 100)


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((3, 2, 3), np.uint8)  # 2 wide, 3 high
    stored[0, 0] = (255, 0, 0)  # red at the stored top-left
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.png", exif=exif)

    shown = open_image(tmp_path / "rotated.png")
    assert shown.size == (3, 2)
    assert shown.getpixel((2, 0)) == (255, 0, 0)  # top-left went to top-right
    assert shown.getexif().get(0x0112, 1) == 1


# The EXIF spec's meaning of each Orientation value, as where the stored image's first row and first
# column lie in the upright picture. `STORED[k](upright)` is what a camera writes for tag k; written
# out with numpy here, independently of Pillow's transpose table.
STORED = {
    1: lambda u: u,  # row 0 top, column 0 left
    2: lambda u: u[:, ::-1],  # top, right: mirrored
    3: lambda u: u[::-1, ::-1],  # bottom, right: rotated 180
    4: lambda u: u[::-1, :],  # bottom, left: flipped upside down
    5: lambda u: u.transpose(1, 0, 2),  # left, top: transposed
    6: lambda u: np.rot90(u, 1),  # right, top: stored[i, j] = upright[j, W-1-i]
    7: lambda u: np.rot90(u, 1)[:, ::-1],  # right, bottom: stored[i, j] = upright[H-1-j, W-1-i]
    8: lambda u: np.rot90(u, -1),  # left, bottom: stored[i, j] = upright[H-1-j, i]
}


def blocks(rows: int, cols: int, side: int = 8) -> np.ndarray:
    """An asymmetric picture: rows x cols flat blocks of distinct colours (8 px: JPEG's block size)."""
    colours = np.array([[(40 * r + 20) % 256, (70 * c + 30) % 256, (90 * (r * cols + c)) % 256]
                        for r in range(rows) for c in range(cols)], np.uint8).reshape(rows, cols, 3)
    return np.kron(colours, np.ones((side, side, 1), np.uint8))


def save_with_orientation(path, upright: np.ndarray, orientation: int, **save_kwargs) -> None:
    image = Image.fromarray(np.ascontiguousarray(STORED[orientation](upright)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **save_kwargs)


@pytest.mark.parametrize("extension, tolerance", [(".png", 0), (".jpg", 6)])
def test_all_eight_exif_orientations_give_the_upright_image(tmp_path, extension, tolerance):
    upright = blocks(2, 3)  # 16 high, 24 wide: a wrong rotation also gets the size wrong
    assert len({tuple(c) for c in upright.reshape(-1, 3)}) == 6
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}{extension}"
        save_with_orientation(path, upright, orientation, **({"quality": 95, "subsampling": 0}
                                                             if extension == ".jpg" else {}))
        with Image.open(path) as raw:
            assert raw.getexif()[0x0112] == orientation  # the tag really is in the file
        shown = open_image(path)
        assert shown.size == (24, 16), orientation
        difference = np.abs(np.asarray(to_rgb(shown)).astype(int) - upright).max()
        assert difference <= tolerance, f"orientation {orientation}: off by {difference}"
        assert shown.getexif().get(0x0112, 1) == 1  # applied once: the tag no longer asks for more


# ---------------------------------------------------------------------------------------------------
# to_rgb: every mode to the right 8-bit RGB values
# ---------------------------------------------------------------------------------------------------


def _rgb(image: Image.Image) -> np.ndarray:
    converted = to_rgb(image)
    assert converted.mode == "RGB" and converted.size == image.size
    return np.asarray(converted)


def test_rgb_stays_the_same():
    pixels = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_rgb(Image.fromarray(pixels)), pixels)


def test_bilevel_and_greyscale():
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    np.testing.assert_array_equal(_rgb(bilevel)[0], [[0, 0, 0], [255, 255, 255]])
    np.testing.assert_array_equal(_rgb(Image.new("L", (1, 1), 77))[0, 0], [77, 77, 77])


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_is_scaled_not_clipped(mode):
    values = np.array([[65535, 32768, 255, 0]])
    image = Image.frombytes(mode, (4, 1), values.astype(">u2" if mode.endswith("B") else "<u2").tobytes())
    np.testing.assert_array_equal(_rgb(image)[0, :, 0], [255, 128, 1, 0])


def test_32_bit_integer_mode_is_read_as_16_bit_range():
    image = Image.fromarray(np.array([[65535, 32768, -5, 70000]], dtype=np.int32))
    assert image.mode == "I"
    np.testing.assert_array_equal(_rgb(image)[0, :, 1], [255, 128, 0, 255])


def test_float_mode_in_unit_range_and_in_byte_range():
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    np.testing.assert_array_equal(_rgb(unit)[0, :, 2], [0, 128, 255])
    byte = Image.fromarray(np.array([[0.0, 100.0, 300.0]], dtype=np.float32))
    np.testing.assert_array_equal(_rgb(byte)[0, :, 2], [0, 100, 255])


def test_transparent_rgba_becomes_background():
    image = Image.new("RGBA", (2, 1), (10, 20, 30, 0))
    image.putpixel((1, 0), (10, 20, 30, 255))
    np.testing.assert_array_equal(_rgb(image)[0], [[255, 255, 255], [10, 20, 30]])
    np.testing.assert_array_equal(np.asarray(to_rgb(image, background=(0, 128, 0)))[0, 0], [0, 128, 0])


def test_greyscale_with_alpha():
    image = Image.new("LA", (1, 1), (0, 128))  # black, half transparent, over white
    assert abs(int(_rgb(image)[0, 0, 0]) - 127) <= 1


def _palette_image() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255])  # index 0 red, index 1 blue
    image.putpixel((1, 0), 1)
    return image


def test_palette_without_transparency():
    np.testing.assert_array_equal(_rgb(_palette_image())[0], [[255, 0, 0], [0, 0, 255]])


@pytest.mark.parametrize("transparency", [0, bytes([0, 255])])  # a single index, or alpha per index
def test_palette_with_transparency_uses_background(transparency):
    image = _palette_image()
    image.info["transparency"] = transparency
    np.testing.assert_array_equal(_rgb(image)[0], [[255, 255, 255], [0, 0, 255]])


def test_palette_transparency_survives_a_png_round_trip(tmp_path):
    image = _palette_image()
    image.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(_rgb(open_image(tmp_path / "p.png"))[0], [[255, 255, 255], [0, 0, 255]])


def test_cmyk_cyan():
    np.testing.assert_array_equal(_rgb(Image.new("CMYK", (1, 1), (255, 0, 0, 0)))[0, 0], [0, 255, 255])


def test_hsv_red():
    np.testing.assert_array_equal(_rgb(Image.new("HSV", (1, 1), (0, 255, 255)))[0, 0], [255, 0, 0])


def test_ycbcr_round_trip():
    original = Image.new("RGB", (1, 1), (200, 100, 50))
    assert np.abs(_rgb(original.convert("YCbCr")).astype(int) - [200, 100, 50]).max() <= 2


# ---------------------------------------------------------------------------------------------------
# Atomic writes: the output is either the complete new file or the untouched old one
# ---------------------------------------------------------------------------------------------------


def test_save_image_atomic_creates_parents_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "deep" / "er" / "out.png"
    save_image_atomic(Image.new("RGB", (3, 2), (1, 2, 3)), target)
    assert os.listdir(target.parent) == ["out.png"]
    assert open_image(target).getpixel((0, 0)) == (1, 2, 3)


def test_save_image_atomic_passes_save_arguments(tmp_path):
    save_image_atomic(Image.new("RGB", (3, 2)), tmp_path / "out", format="PNG")
    assert Image.open(tmp_path / "out").format == "PNG"


def test_failed_write_keeps_the_existing_file(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")

    def half_write_then_fail(tmp_path_: str) -> None:
        with open(tmp_path_, "wb") as file:
            file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_bytes_atomic(target, half_write_then_fail, suffix=".png")
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["out.png"]


def test_temp_file_keeps_the_real_extension(tmp_path):
    seen = []
    write_bytes_atomic(tmp_path / "x.gif", lambda tmp: (seen.append(tmp), open(tmp, "wb").close()))
    assert seen[0].endswith(".gif") and os.path.dirname(seen[0]) == str(tmp_path)


def test_writing_onto_a_directory_is_refused(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(DataError, match="directory"):
        save_image_atomic(Image.new("RGB", (1, 1)), tmp_path / "out.png")


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(DataError, match="extension"):
        save_image_atomic(Image.new("RGB", (1, 1)), tmp_path / "out.notanimage")
    assert os.listdir(tmp_path) == []
