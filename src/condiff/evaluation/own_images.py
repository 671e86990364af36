"""A user's own images, as `condiff eval TASK --data FOLDER` measures a model on them.

The images measured on are those the model never trained on: for the folder the model was trained on, the
images its recipe's `data.held_out_every` kept out (the same split, read the same way: resolution, resize,
crop, the background transparency is composited on); for any other folder or dataset, every image. The
training part (or, for a model trained on other data, that data) is what tables built from "the data"
(colorize's gray-level colour table) are built from.

Nothing here knows Nouns, so the measures built on it hold for any images: pixel-space features for
distances (`RandomFeatureSpace`), colour in CIE Lab (`chroma_error`), and a per-gray-level colour table
(`GrayLevelColours`), the baseline a colorizer has to beat.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from condiff.config import DataConfig, load_recipe
from condiff.data.sources import build_dataset, describe_source
from condiff.errors import DataError
from condiff.evaluation import metrics
from condiff.images import list_image_files, to_model_tensor, to_uint8
from condiff.palette import color_gray_levels

TABLE_IMAGES = 2000  # at most this many training images build a table (Nouns are drawn, not read)


@dataclass
class OwnImages:
    truth: torch.Tensor  # (N, 3, R, R) in [-1, 1]: images the model never trained on
    training: torch.Tensor  # (M, 3, R, R) in [-1, 1]: images of the model's training data (may be empty)
    background: tuple[int, int, int]  # the colour transparent pixels were composited on
    what: str  # what `truth` is, for the report


def own_images(data: str, model: str | Path, resolution: int, num: int) -> OwnImages:
    """Up to `num` images of `data` (a folder or any source a recipe's data.source takes) that the model in
    folder `model` never trained on, at its `resolution`, and images of its training data."""
    trained = trained_data(model, resolution)
    kind = describe_source(data)  # a one-line DataError for a source that does not exist
    if kind == "nouns":
        raise DataError("--data nouns: held-out Nouns are what `condiff eval` measures without --data; give a "
                        "folder of your own images")
    if kind == "folder":
        check_sizes(Path(data).expanduser(), resolution)
    same = trained.source != "nouns" and same_source(trained.source, data)
    if same and not trained.held_out_every:
        raise DataError(f"{model} was trained on every image of {data} (its recipe has no data.held_out_every): "
                        "measure it on a folder it never saw, or train with data.held_out_every: 10")
    config = dataclasses.replace(trained, source=data, held_out_every=trained.held_out_every if same else 0,
                                 size=trained.size if same else None, bad_images="skip")
    dataset = build_dataset(config)
    if same:
        unseen = dataset.held_out.images
        what = f"held-out images (every {trained.held_out_every}th of {data})"
        training = dataset.images
    else:
        unseen = dataset.images
        what = f"all images of {data} (the model trained on {trained.source})"
        training = training_images(trained)
    if len(unseen) < 10:
        raise DataError(f"--data {data}: {len(unseen)} image(s) to measure on; give at least 10 the model never "
                        "trained on")
    return OwnImages(to_model_tensor(unseen[:num]), to_model_tensor(training), tuple(trained.background), what)


def trained_data(model: str | Path, resolution: int) -> DataConfig:
    """The `data` section the model was trained with (its folder's recipe.yaml), at `resolution`; the
    defaults (the built-in Nouns) for a folder without one, such as the shipped models."""
    recipe_file = Path(model) / "recipe.yaml"
    data = load_recipe(recipe_file).data if recipe_file.is_file() else DataConfig()
    return dataclasses.replace(data, resolution=resolution)


def same_source(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def check_sizes(folder: Path, resolution: int) -> None:
    """Images smaller than the model would be enlarged into a truth they never had: one line naming the first."""
    files = list_image_files(folder)
    if not files:
        raise DataError(f"--data {folder}: no image files in this folder; give a folder of images")
    for path in files:
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, UnidentifiedImageError, ValueError):
            continue  # unreadable: left out and counted by the reader
        if min(size) < resolution:
            raise DataError(f"{path}: {size[0]}x{size[1]} px, smaller than the model's {resolution} px; measure on "
                            f"images at least {resolution} px on their shorter side")


def training_images(data: DataConfig) -> np.ndarray:
    """Up to TABLE_IMAGES images of the data a model was trained on (its training part), or none when that
    data cannot be read here (a folder on another machine)."""
    try:
        if describe_source(data.source) == "nouns":
            data = dataclasses.replace(data, size=TABLE_IMAGES)
        dataset = build_dataset(dataclasses.replace(data, bad_images="skip"))
    except DataError:
        return np.zeros((0, data.resolution, data.resolution, 3), np.uint8)
    count = min(len(dataset), TABLE_IMAGES)
    if hasattr(dataset, "images"):
        return dataset.images[:count]
    return np.stack([dataset[i]["image"] for i in range(count)])


# --- measures that need no feature network ---------------------------------------------------------


class RandomFeatureSpace:
    """A feature space that knows no data set, for FD and KID on any images: three 3x3 convolutions with
    fixed random weights (seed 0, He scale), each with stride 2 and a ReLU, and of each channel its mean and
    spread over the image (448 numbers). Random filters respond to colour, edges and texture alike; on
    Twemoji the mean image scores about 3x, noise about 4x the distance of training against held-out images."""

    WIDTHS = (32, 64, 128)

    def __init__(self, reference: torch.Tensor) -> None:
        generator, channels = torch.Generator().manual_seed(0), 3
        self.weights = []
        for width in self.WIDTHS:
            scale = (2.0 / (channels * 9)) ** 0.5
            self.weights.append(torch.randn(width, channels, 3, 3, generator=generator) * scale)
            channels = width
        self.reference = self.features(reference)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x, summary = images.float().cpu(), []
        for weight in self.weights:
            x = torch.nn.functional.conv2d(x, weight, stride=2, padding=1).relu()
            summary += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        return torch.cat(summary, dim=1)

    def scores(self, images: torch.Tensor) -> dict[str, float | None]:
        features = self.features(images)
        return {"FD": metrics.frechet_distance(features, self.reference),
                "KID": metrics.kernel_inception_distance(features, self.reference)[0],
                "flat-area noise": metrics.flat_area_noise(images)}


FEATURE_NOTE = ("FD, KID: on random-filter features (condiff.evaluation.own_images.RandomFeatureSpace: three "
                "fixed random 3x3 convolutions, each channel's mean and spread), a space no data set trained")


def lab(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) CIE Lab (L in 0..100)."""
    from skimage.color import rgb2lab

    return rgb2lab(to_uint8(images).astype(np.float64) / 255.0)


def chroma_error(outputs: torch.Tensor, truth: torch.Tensor) -> float:
    """The mean distance of the outputs' colour (a, b in CIE Lab) from the truth's, per pixel."""
    return float(np.linalg.norm(lab(outputs)[..., 1:] - lab(truth)[..., 1:], axis=-1).mean())


class GrayLevelColours:
    """The data's mean colour (a, b in CIE Lab) at each 8-bit gray level: the colorizer that only looks
    up a pixel's gray. Levels the data never shows take the nearest level's colour."""

    def __init__(self, images: torch.Tensor) -> None:
        levels = color_gray_levels(images).flatten().numpy().astype(np.int64)
        chroma = lab(images)[..., 1:].reshape(-1, 2)
        counts = np.bincount(levels, minlength=256)
        sums = np.stack([np.bincount(levels, chroma[:, i], minlength=256) for i in (0, 1)], axis=1)
        seen = np.flatnonzero(counts)
        nearest = seen[np.abs(np.arange(256)[:, None] - seen[None, :]).argmin(axis=1)] if len(seen) else None
        self.table = (sums[nearest] / counts[nearest, None]) if nearest is not None else np.zeros((256, 2))

    def colorize(self, gray: torch.Tensor) -> torch.Tensor:
        """Gray images (N, 3, H, W) in [-1, 1] with each pixel's colour looked up, their lightness kept."""
        from skimage.color import lab2rgb

        picture = lab(gray)
        picture[..., 1:] = self.table[color_gray_levels(gray).numpy().astype(np.int64)]
        with warnings.catch_warnings():  # colours outside sRGB are clipped on purpose
            warnings.filterwarnings("ignore", "Conversion from CIE-LAB", UserWarning)
            rgb = np.clip(lab2rgb(picture), 0.0, 1.0)
        return to_model_tensor(np.rint(rgb * 255.0).astype(np.uint8))
