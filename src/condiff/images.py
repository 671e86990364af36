"""Images: reading users' files safely, converting between pictures and model tensors, writing atomically.

Reading turns every way a user's file can be wrong into a one-line `DataError` naming the file (`open_image`).
The model works on float tensors (N, 3, H, W) in [-1, 1]; `to_model_tensor` and `to_uint8` are the only places
that map them to and from 8-bit pixels. Writing never leaves a half-written file nor destroys an existing one
(`write_bytes_atomic`, `StagedFiles`): atomic against crashes of this process, not against power loss (no fsync).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from condiff.errors import DataError, StorageError, first_line, is_write_failure, write_failure_reason

# Input images larger than this are refused from their header, in the CLI and the app alike: memory and time grow
# with the pixels (colorize --full-res at 16 MP peaks at about 0.7 GB, docs/colorize.md). Users raise it with
# the environment variable (`pixel_limit`).
DEFAULT_MAX_PIXELS = 16_000_000
MAX_PIXELS_VARIABLE = "CONDIFF_MAX_PIXELS"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}

# Pillow's format plugins raise many exception types on malformed data, not only OSError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError)

# Modes with an alpha channel; palette and greyscale images may instead have a transparent entry.
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


def list_image_files(folder: Path, recursive: bool = True) -> list[Path]:
    """The image files in `folder` (by suffix, see IMAGE_SUFFIXES), sorted; in its subfolders too if
    `recursive`."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def pixel_limit() -> int:
    """The most pixels an input image may have: $CONDIFF_MAX_PIXELS if set, else DEFAULT_MAX_PIXELS."""
    value = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise DataError(f"{MAX_PIXELS_VARIABLE}={value[:40]!r}: give a whole number of pixels, e.g. "
                        f"{MAX_PIXELS_VARIABLE}=64000000, or unset it for the default {DEFAULT_MAX_PIXELS:,}")
    return limit


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image file, with EXIF orientation applied, in its original mode.

    Raises `DataError` (one line, naming the file) when the file is missing, a directory, empty, not an
    image, truncated or corrupt, or larger than `max_pixels` (default: `pixel_limit()`). The size is checked
    from the header before any pixel is decoded, so a hostile header cannot make us allocate gigabytes.
    """
    path = os.fspath(path)
    max_pixels = pixel_limit() if max_pixels is None else max_pixels
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found; check the path")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not an image file; give the path of an image")
    if not os.path.isfile(path):
        raise DataError(f"{path}: not a regular file; give the path of an image file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: file is empty (0 bytes); re-export the image or remove the file")

    try:
        with warnings.catch_warnings():
            # Pillow warns above its own global limit; we enforce `max_pixels` ourselves below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as lazy:
                width, height = lazy.size  # from the header: nothing is decoded yet
                if width * height > max_pixels:
                    raise DataError(f"{path}: image is {width}x{height} = {width * height:,} pixels, over the limit "
                                    f"of {max_pixels:,}; downscale it, or allow it with the environment variable "
                                    f"{MAX_PIXELS_VARIABLE}={width * height} (memory and time grow with the pixels)")
                lazy.load()  # decode everything now, so truncation is reported here and not later
                return ImageOps.exif_transpose(lazy)  # a loaded copy that outlives the closed file
    except Image.DecompressionBombError as err:
        raise DataError(f"{path}: image is too large to decode safely ({err}); downscale it") from err
    except PermissionError as err:
        raise DataError(f"{path}: permission denied; make the file readable") from err
    except UnidentifiedImageError as err:
        raise DataError(f"{path}: not an image Pillow can read; convert it to PNG or remove it") from err
    except _DECODE_ERRORS as err:
        raise DataError(f"{path}: truncated or corrupt image ({first_line(err)}); re-export or remove it") from err


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert an image of any common Pillow mode to 8-bit RGB.

    - Transparency (alpha channels, and palette or greyscale images with a transparent entry) is
      composited over `background` rather than dropped, so transparent pixels do not turn black.
    - 16-bit integer modes (`I;16`, `I;16B`, ... and `I`, which Pillow uses for 16-bit PNGs) are scaled
      from 0..65535 to 0..255; `Image.convert` would instead clip everything above 255 to white.
    - `F` (32-bit float) is read as 0..1 if its maximum is at most 1, else as 0..255; values outside
      the range are clipped and NaN becomes 0.
    - `1`, `L`, `P`, `CMYK`, `YCbCr`, `HSV` use Pillow's own conversion.
    """
    if image.mode in _16BIT_MODES:
        return _grey_to_rgb(np.asarray(image, dtype=np.float64) * (255.0 / 65535.0))
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        return _grey_to_rgb(values * 255.0 if values.max(initial=0.0) <= 1.0 else values)
    if has_transparency(image):
        canvas = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(canvas, image.convert("RGBA")).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise DataError(
            f"image mode {image.mode!r} cannot be converted to RGB; save it as an RGB PNG"
        ) from err


def has_transparency(image: Image.Image) -> bool:
    """True for an alpha channel or a transparent palette/greyscale entry (composited, never dropped)."""
    return image.mode in ALPHA_MODES or "transparency" in image.info


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey, grey, grey], axis=-1))


# ---------------------------------------------------------------------------------------------------
# Converting between pictures and model tensors
# ---------------------------------------------------------------------------------------------------


LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


def luma(images):
    """(N, 3, H, W) -> (N, 1, H, W) tensors: BT.601 luma, in the same range as the input.

    The weights sum to one, so luma can be taken directly in the model's [-1, 1] range and a grey pixel
    keeps its value."""
    import torch

    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


# BT.601 chroma: (B - Y) / 1.772 and (R - Y) / 1.402, so that each spans [-1, 1] for images in [-1, 1].
CHROMA_SCALES = (1.772, 1.402)


def chroma(images):
    """(N, 3, H, W) -> (N, 2, H, W) tensors: BT.601 chroma (Cb, Cr) of images in [-1, 1], each in [-1, 1];
    with `luma` it is the image, exactly (`from_luma_chroma`)."""
    import torch

    y = luma(images)
    return torch.cat([(images[:, 2:3] - y) / CHROMA_SCALES[0], (images[:, 0:1] - y) / CHROMA_SCALES[1]], dim=1)


def from_luma_chroma(y, cbcr):
    """(N, 1, H, W) luma and (N, 2, H, W) chroma in [-1, 1] -> (N, 3, H, W) RGB images, `luma` and `chroma`'s
    inverse. A chroma too strong for its luma (beyond the RGB cube) is shortened until it fits, so every
    pixel keeps exactly its luma, with less colour, rather than being clipped to another lightness."""
    import torch

    y = y.clamp(-1, 1)
    blue = CHROMA_SCALES[0] * cbcr[:, 0:1]
    red = CHROMA_SCALES[1] * cbcr[:, 1:2]
    green = -(LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[2] * blue) / LUMA_WEIGHTS[1]
    offsets = torch.cat([red, green, blue], dim=1)  # from the gray of luma y; their luma is 0
    limit = torch.where(offsets > 0, 1 - y, -1 - y)  # how far each channel may move
    moves = offsets.abs() > 1e-12
    room = torch.where(moves, limit / offsets.where(moves, 1.0), float("inf"))
    share = room.amin(dim=1, keepdim=True).clamp(max=1)
    return (y + share * offsets).clamp(-1, 1)


def to_model_tensor(images):
    """uint8 (N, H, W, 3), numpy or torch -> float32 torch tensor (N, 3, H, W) in [-1, 1], the model's range."""
    import torch

    tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    return tensor.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: Any) -> np.ndarray:
    """Return images as a uint8 array of shape (N, H, W, 3).

    Accepts a uint8 array (N, H, W, C) or (H, W, C), a torch tensor in [-1, 1] (N, C, H, W) or
    (C, H, W) (values outside are clipped), or a PIL image; C is 3, or 1 for greyscale.
    """
    if isinstance(images, Image.Image):
        return np.asarray(to_rgb(images))[None]
    if hasattr(images, "detach"):  # a torch tensor; checked by duck typing so torch need not be imported
        array = images.detach().float().cpu().numpy()
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[1] not in (1, 3):
            raise ValueError(
                f"expected a tensor of shape (N, 3, H, W) or (3, H, W), got {tuple(array.shape)}"
            )
        array = np.rint(np.clip((array + 1.0) * 127.5, 0, 255)).astype(np.uint8).transpose(0, 2, 3, 1)
    else:
        array = np.asarray(images)
        if array.dtype != np.uint8:
            raise TypeError(f"expected a uint8 array or a tensor in [-1, 1], got an array of {array.dtype}")
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] not in (1, 3):
            raise ValueError(f"expected an array of shape (N, H, W, 3) or (H, W, 3), got {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def to_pil_images(images: Any) -> list[Image.Image]:
    """A batch (anything `to_uint8` takes) as a list of RGB PIL images."""
    return [Image.fromarray(array) for array in to_uint8(images)]


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def write_bytes_atomic(
    path: str | os.PathLike, write: Callable[[str], None], suffix: str | None = None
) -> None:
    """Create `path` atomically: `write(tmp_path)` writes a temporary file that then replaces `path`.

    The temporary file sits in the same directory (so the rename cannot cross file systems) and ends
    with `suffix` (default: the extension of `path`) so that writers that infer the format from the
    name (Pillow, imageio, matplotlib) still do. If `write` raises, the temporary file is removed and
    an existing `path` is left untouched. Parent directories are created.
    """
    with StagedFiles() as staged:
        staged.write(path, write, suffix)
        staged.commit()


def _write_error(path: str, err: BaseException) -> StorageError:
    reason = write_failure_reason(err)
    return StorageError(f"{path}: could not write it ({reason}); free disk space or choose a writable folder", reason)


def check_writable(path: str | os.PathLike) -> None:
    """Before any work: an output file can be created at `path` (its name is not too long, and its
    nearest existing folder takes a new file), or a one-line StorageError that names it."""
    path = os.fspath(path)
    for part in Path(path).parts:
        if len(os.fsencode(part)) > 255:
            raise StorageError(f"{path}: the name {part[:40]}... is too long (at most 255 bytes); choose a shorter one",
                               "File name too long")
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise StorageError(f"{path}: {folder} is a file, not a folder; choose another output", "Not a directory")
    try:
        with tempfile.TemporaryFile(dir=folder):  # created and removed at once: nothing is left behind
            pass
    except OSError as err:
        raise _write_error(path, err) from None


_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp(\.\w+)?")  # the names StagedFiles.write gives


def is_temp_file(name: str) -> bool:
    """Whether a file name is one of the writers' temporary files, such as a killed process leaves behind:
    never an output, so it does not make a folder count as holding outputs."""
    return _TEMP_NAME.fullmatch(name) is not None


def save_image_atomic(image: Image.Image, path: str | os.PathLike, **save_kwargs) -> None:
    """`image.save(path, **save_kwargs)`, but atomic (see `write_bytes_atomic`).

    The format comes from the extension of `path` unless `format=` is given.
    """
    with StagedFiles() as staged:
        staged.save_image(image, path, **save_kwargs)
        staged.commit()


class StagedFiles:
    """A command's files written as one: each to a temporary file beside it (as `write_bytes_atomic` does),
    all moved into place by `commit()`. Leaving the `with` block without committing (an error, Ctrl-C,
    SIGTERM) removes them, so a command that fails midway writes nothing and replaces nothing."""

    def __init__(self) -> None:
        self.staged: list[tuple[str, str]] = []  # (temporary file, its destination), in the order written

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def write(self, path: str | os.PathLike, write: Callable[[str], None], suffix: str | None = None) -> None:
        """`write(tmp_path)` fills a temporary file (see `write_bytes_atomic`) that `commit` moves to `path`."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise DataError(f"{path}: is an existing directory; choose a file name for the output")
        if suffix is None:
            suffix = os.path.splitext(path)[1]
        directory, name = os.path.split(os.path.abspath(path))
        self.staged.append(("", path))
        try:
            os.makedirs(directory, exist_ok=True)
            while True:
                tmp_path = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp{suffix}")
                # Listed before the file exists: an interrupt at any moment (a signal can reach any of torch's
                # threads, so it cannot be held back) never leaves a file that `discard` does not know of.
                self.staged[-1] = (tmp_path, path)
                try:
                    # Mode 0o666, so the umask applies as for any normal file (mkstemp would give 0o600).
                    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                    break
                except FileExistsError:
                    self.staged[-1] = ("", path)  # someone else's: not ours to remove
        except OSError as err:
            raise _write_error(path, err) from None
        try:
            write(tmp_path)
        except Exception as err:  # the file itself is removed on leaving the `with` block, as any staged one
            if is_write_failure(err):
                raise _write_error(path, err) from None
            raise

    def save_image(self, image: Image.Image, path: str | os.PathLike, **save_kwargs) -> None:
        """`image.save` into the temporary file, in the format `path` names (or `format=`)."""
        path = os.fspath(path)
        extension = os.path.splitext(path)[1].lower()
        if "format" not in save_kwargs and extension not in Image.registered_extensions():
            raise DataError(f"{path}: unknown image extension {extension!r}; use e.g. .png")
        self.write(path, lambda tmp_path: image.save(tmp_path, **save_kwargs), extension)

    def commit(self) -> None:
        """Move every file into place, in the order written."""
        for done, (tmp_path, path) in enumerate(self.staged):
            try:
                os.replace(tmp_path, path)
            except OSError as err:
                self.staged = self.staged[done:]  # the rest are removed on leaving the `with` block
                raise _write_error(path, err) from None
        self.staged = []

    def discard(self) -> None:
        """Remove the temporary files not yet moved into place."""
        for tmp_path, _ in self.staged:
            if tmp_path:
                with contextlib.suppress(FileNotFoundError):  # recorded, but interrupted before it was made
                    os.remove(tmp_path)
        self.staged = []
