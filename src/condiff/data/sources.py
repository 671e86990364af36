"""Training data sources behind one function, `build_dataset(DataConfig)`.

Every source yields dicts with at least `"image"`: a (resolution, resolution, 3) uint8 array.
- `nouns`: the built-in renderer (deterministic for `data.seed`; `size: null` streams forever).
- a local image folder (recursive), a `datasets.save_to_disk` folder, a `.parquet` file,
- a Hugging Face Hub dataset id such as `m1guelpf/nouns` (needs internet).

Non-Nouns sources are decoded and preprocessed once into memory: per-sample PIL work in the training
loop is what makes tutorial-style loops slow, and datasets of small images fit easily.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from condiff.config import DataConfig
from condiff.data.preprocess import prepare_image, resize_array
from condiff.errors import DataError, first_line
from condiff.images import IMAGE_SUFFIXES, list_image_files, open_image

# Training folders may hold camera photos: decoded one at a time and made small at once, they may be larger
# than what a command takes (condiff.images.pixel_limit, 16 MP).
TRAINING_MAX_PIXELS = 64_000_000
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ArrayDataset:
    """Images already preprocessed into one uint8 array (map-style, works with torch DataLoader)."""

    def __init__(self, images: np.ndarray, texts: list[str] | None = None, skipped: list[Path] | None = None) -> None:
        self.images = images
        self.texts = texts
        self.skipped = skipped or []  # unreadable files left out (data.bad_images: skip)
        self.held_out: ArrayDataset | None = None  # the images data.held_out_every kept out of training

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"image": self.images[index]}
        if self.texts is not None:
            item["text"] = self.texts[index]
        return item


class ResizedDataset:
    """Wraps a dataset whose native resolution differs from the recipe's (Nouns are 32 px)."""

    def __init__(self, inner: Any, resolution: int, resize: str) -> None:
        self.inner, self.resolution, self.resize = inner, resolution, resize

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.inner[index])
        item["image"] = resize_array(item["image"][None], self.resolution, self.resize)[0]
        return item


def describe_source(source: str) -> str:
    """Classify `data.source` as nouns / folder / disk / parquet / hub, or raise a helpful error."""
    if source == "nouns":
        return "nouns"
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "disk"
        return "folder"
    if path.is_file():
        if path.suffix == ".parquet":
            return "parquet"
        raise DataError(f"data.source {source!r} is a file; give a folder of images, a .parquet file, "
                        "a save_to_disk folder, a Hub id like m1guelpf/nouns, or 'nouns'")
    if _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        return "hub"
    raise DataError(f"data.source {source!r}: no such folder or file, and not a Hub id (owner/name); "
                    "use 'nouns' for the built-in data")


def build_dataset(config: DataConfig) -> Any:
    """Return a torch-compatible dataset for the recipe's `data` section: the training images, without
    those `data.held_out_every` holds out (an image source's dataset keeps them as `.held_out`)."""
    kind = describe_source(config.source)
    if kind == "nouns":
        return _nouns_dataset(config)
    dataset = _folder_dataset(config) if kind == "folder" else _hf_dataset(config, kind)
    return hold_out(dataset, config.held_out_every, config.source)


def hold_out(dataset: ArrayDataset, every: int, source: str) -> ArrayDataset:
    """The images of `dataset` except every `every`-th (the 1st, the (every+1)-th, ...), which become its
    `.held_out`; `every` 0 holds out none."""
    if not every:
        return dataset
    keep = np.arange(len(dataset)) % every != 0
    if every == 1 or not keep.any():
        raise DataError(f"data.held_out_every: {every} would hold out all {len(dataset)} images of {source!r}; "
                        "use 0 (none) or a larger number, e.g. 10 for every 10th image")
    texts = np.array(dataset.texts, dtype=object) if dataset.texts is not None else None
    training = ArrayDataset(dataset.images[keep], None if texts is None else list(texts[keep]), dataset.skipped)
    training.held_out = ArrayDataset(dataset.images[~keep], None if texts is None else list(texts[~keep]))
    return training


def unseen_images(config: DataConfig, dataset: Any, num: int) -> tuple[np.ndarray, str]:
    """Up to `num` images training never sees, as (N, resolution, resolution, 3) uint8, and what they are.

    Nouns: drawn with seed data.seed + 1 (another stream than training's). Image sources: the first of the
    held-out images; without any (data.held_out_every: 0), the first training images, said so."""
    if describe_source(config.source) == "nouns":
        from condiff.data.nouns import NounsDataset

        nouns = NounsDataset(num, seed=config.seed + 1)
        images = np.stack([nouns[i]["image"] for i in range(num)])
        return resize_array(images, config.resolution, config.resize), f"held-out Nouns (seed {config.seed + 1})"
    held_out = getattr(dataset, "held_out", None)
    if held_out is not None:
        return held_out.images[:num], f"held-out images (every {config.held_out_every}th of {config.source})"
    return dataset.images[:num], "training images (set data.held_out_every to measure on held-out ones)"


def _nouns_dataset(config: DataConfig) -> Any:
    from condiff.data.nouns import InfiniteNounsDataset, NounsDataset

    if config.size is None:
        if config.resolution != 32:
            raise DataError("data.size: null (endless Nouns) needs data.resolution 32; give a size to resize")
        return InfiniteNounsDataset(seed=config.seed)
    dataset = NounsDataset(size=config.size, seed=config.seed)
    if config.resolution != 32:
        return ResizedDataset(dataset, config.resolution, config.resize)
    return dataset


def _folder_dataset(config: DataConfig) -> ArrayDataset:
    folder = Path(config.source).expanduser()
    files = list_image_files(folder)
    if not files:
        raise DataError(f"data.source {config.source!r}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                        "found in this folder")
    images, skipped = [], []
    for path in files:
        if config.size is not None and len(images) >= config.size:
            break
        try:
            image = open_image(path, max_pixels=TRAINING_MAX_PIXELS)
        except DataError as err:
            if config.bad_images == "fail":
                raise DataError(f"{err} (set data.bad_images: skip to leave such files out)") from None
            skipped.append(path)
            continue
        images.append(prepare_image(image, config.resolution, config.resize, config.center_crop,
                                    tuple(config.background)))
    if skipped:
        print(f"condiff: skipped {len(skipped)} unreadable image(s) in {folder}, e.g. {skipped[0]}")
    if not images:
        raise DataError(f"data.source {config.source!r}: none of the {len(files)} image files could be read")
    return ArrayDataset(np.stack(images), skipped=skipped)


@contextlib.contextmanager
def quiet_hub():
    """No retry notices from huggingface_hub while a dataset loads (offline, each try printed a line):
    a failure ends in condiff's own one-line error."""
    from huggingface_hub.utils import logging as hub_logging

    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        yield
    finally:
        hub_logging.set_verbosity(level)


def _hf_dataset(config: DataConfig, kind: str) -> ArrayDataset:
    import datasets

    try:
        with quiet_hub():
            if kind == "disk":
                loaded = datasets.load_from_disk(str(Path(config.source).expanduser()))
            elif kind == "parquet":
                loaded = datasets.load_dataset("parquet", data_files=config.source, split="train")
            else:
                loaded = datasets.load_dataset(config.source, split=config.split)
    except Exception as err:  # datasets raises many types (connection, not found, schema)
        reason = first_line(err)
        hint = " (check the id and your internet connection)" if kind == "hub" else ""
        raise DataError(f"data.source {config.source!r}: could not load the dataset: {reason}{hint}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if config.split not in loaded:
            raise DataError(f"data.split {config.split!r} not in {config.source!r}; "
                            f"it has {', '.join(loaded)}")
        loaded = loaded[config.split]
    if config.image_column not in loaded.column_names:
        raise DataError(f"data.image_column {config.image_column!r} not in {config.source!r}; "
                        f"its columns are {', '.join(loaded.column_names)}")
    if config.size is not None:
        loaded = loaded.select(range(min(config.size, len(loaded))))
    column = loaded[config.image_column]  # decoded PIL images
    images = np.stack([
        prepare_image(image, config.resolution, config.resize, config.center_crop, tuple(config.background))
        for image in column
    ])
    texts = list(loaded["text"]) if "text" in loaded.column_names else None
    return ArrayDataset(images, texts)
