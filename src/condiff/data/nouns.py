"""The Nouns: CC0 pixel-art characters, as a built-in dataset of images, part labels and captions.

A Noun is a background colour with four parts drawn over it in order: body, accessory, head,
glasses (the order of the Nouns on-chain renderer). The artwork ships run-length encoded in
`nouns_assets.json` (origin and licence in NOTICE.md). Every part is decoded once, at load, into a
32x32 array of palette indices, so rendering is a few `np.where`s and one palette lookup.

Items are deterministic: item i of a dataset with seed s is drawn from `np.random.default_rng([s, i])`,
so it is the same in every process, worker and run (for a given numpy, whose generator streams are
stable in practice).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass
from importlib import resources

import numpy as np
import torch.utils.data

SIZE = 32
PART_KINDS = ("background", "body", "accessory", "head", "glasses")  # layering order, bottom first
NO_ACCESSORY = "none"  # the source has an empty accessory under this name


# ---------------------------------------------------------------- Nouns and their art


@dataclass(frozen=True)
class Noun:
    """One Noun, as an index into each part list; `Noun(*labels)` rebuilds it from its labels."""

    background: int
    body: int
    accessory: int
    head: int
    glasses: int

    def labels(self) -> tuple[int, ...]:
        """The part indices in PART_KINDS order."""
        return astuple(self)


def read_assets() -> dict:
    """The shipped artwork as parsed JSON (format described in its "format" field)."""
    return json.loads(resources.files("condiff.data").joinpath("nouns_assets.json").read_text())


def decode_part(rle: str) -> np.ndarray:
    """A 32x32 uint8 array of palette indices (0 = transparent) from one part's run-length hex."""
    layer = np.zeros((SIZE, SIZE), np.uint8)
    if not rle:
        return layer
    raw = np.frombuffer(bytes.fromhex(rle), np.uint8)
    top, right, bottom, left = (int(b) for b in raw[:4])
    pixels = np.repeat(raw[5::2], raw[4::2])
    # The source's bottom bound is inclusive and its right bound is not.
    layer[top : bottom + 1, left:right] = pixels.reshape(bottom - top + 1, right - left)
    return layer


def hex_to_rgb(colors: Sequence[str]) -> np.ndarray:
    """(len(colors), 3) uint8; an empty string (the transparent palette entry) becomes black."""
    return np.array([list(bytes.fromhex(color or "000000")) for color in colors], np.uint8).reshape(-1, 3)


class NounsArt:
    """The decoded Nouns artwork: names every part, renders Nouns, draws random ones and captions them."""

    def __init__(self, assets: Mapping) -> None:
        backgrounds = assets["backgrounds"]
        self.part_names: dict[str, list[str]] = {"background": [bg["name"] for bg in backgrounds]}
        # kind -> (num_parts, 32, 32) palette indices
        self._layers: dict[str, np.ndarray] = {}
        for kind in PART_KINDS[1:]:
            parts = assets["parts"][kind]
            self.part_names[kind] = [part["name"] for part in parts]
            self._layers[kind] = np.stack([decode_part(part["rle"]) for part in parts])
        # [background, palette index] -> RGB; the transparent index 0 shows the background itself.
        colors = np.repeat(hex_to_rgb(assets["palette"])[None], len(backgrounds), axis=0)
        colors[:, 0] = hex_to_rgb([bg["color"] for bg in backgrounds])
        self._colors = colors
        self._counts = np.array([self.num_parts(kind) for kind in PART_KINDS])

    def num_parts(self, kind: str) -> int:
        if kind not in self.part_names:
            raise ValueError(f"unknown part kind {kind!r}; the kinds are {', '.join(PART_KINDS)}")
        return len(self.part_names[kind])

    def render(self, noun: Noun) -> np.ndarray:
        """(32, 32, 3) uint8 RGB."""
        return self.render_batch([noun])[0]

    def render_batch(self, nouns: Sequence[Noun]) -> np.ndarray:
        """(N, 32, 32, 3) uint8 RGB, all Nouns at once."""
        labels = np.array([noun.labels() for noun in nouns], np.intp).reshape(-1, len(PART_KINDS))
        self._check(labels)
        index = np.zeros((len(labels), SIZE, SIZE), np.uint8)
        for column, kind in enumerate(PART_KINDS[1:], start=1):
            layer = self._layers[kind][labels[:, column]]
            index = np.where(layer != 0, layer, index)
        return self._colors[labels[:, :1, None], index]

    def part_masks(self, nouns: Sequence[Noun], kind: str) -> np.ndarray:
        """(N, 32, 32) bool: where each Noun's part of `kind` (body, accessory, head, glasses) has pixels,
        whether or not a later layer covers them."""
        labels = np.array([getattr(noun, kind) for noun in nouns], np.intp)
        return self._layers[kind][labels] != 0

    def random_noun(self, rng: np.random.Generator) -> Noun:
        """Each part drawn uniformly from its list (the empty accessory included, as on-chain)."""
        return Noun(*(int(label) for label in rng.integers(self._counts)))

    def caption(self, noun: Noun) -> str:
        """E.g. "a pixel art character with square red glasses, a shark head, a bege bsod body and
        a txt noun multicolor accessory on a cool background"."""
        name = {kind: self.part_names[kind][getattr(noun, kind)].replace("-", " ") for kind in PART_KINDS}
        accessory = with_article(f"{name['accessory']} accessory")
        if name["accessory"] == NO_ACCESSORY:
            accessory = "no accessory"
        return (
            f"a pixel art character with {name['glasses']} glasses, {with_article(name['head'] + ' head')}, "
            f"{with_article(name['body'] + ' body')} and {accessory} on a {name['background']} background"
        )

    def _check(self, labels: np.ndarray) -> None:
        # numpy would wrap a negative index silently, drawing some other part.
        bad = (labels < 0) | (labels >= self._counts)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            kind, label, count = PART_KINDS[column], labels[row, column], self._counts[column]
            raise IndexError(f"{kind} {label} is out of range: there are {count} {kind} parts")


def with_article(phrase: str) -> str:
    # Names spoken with a leading "you" sound (ufo, unicorn) take "a" despite their vowel.
    vowel_sound = phrase[0] in "aeiou" and not phrase.startswith(("ufo", "uni"))
    return f"{'an' if vowel_sound else 'a'} {phrase}"


@functools.cache
def load_art() -> NounsArt:
    """The shipped artwork, decoded once per process."""
    return NounsArt(read_assets())


# ---------------------------------------------------------------- datasets


def nth_noun(art: NounsArt, seed: int, i: int) -> Noun:
    """Noun i of the stream for `seed`, shared by both datasets."""
    return art.random_noun(np.random.default_rng([seed, i]))


def make_items(art: NounsArt, nouns: Sequence[Noun]) -> list[dict]:
    """Dataset items for `nouns`, rendered in one batch: per-Noun rendering was most of a data loader's
    time, which a GPU step waits for."""
    images = art.render_batch(nouns)
    return [{"image": image, "labels": np.array(noun.labels(), np.int64), "text": art.caption(noun)}
            for noun, image in zip(nouns, images, strict=True)]


class NounsDataset(torch.utils.data.Dataset):
    """Fixed-size, deterministic: item i depends only on (seed, i).

    Items are {"image": (32, 32, 3) uint8 RGB, "labels": (5,) int64 in PART_KINDS order, "text": str}.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 0 or seed < 0:
            raise ValueError(f"size and seed must not be negative, got size={size}, seed={seed}")
        self.size = size
        self.seed = seed
        self.art = load_art()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        return make_items(self.art, [self.noun(i)])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """A whole batch at once (torch's DataLoader calls this instead of __getitem__ per item)."""
        return make_items(self.art, [self.noun(i) for i in indices])

    def noun(self, i: int) -> Noun:
        if not -self.size <= i < self.size:
            raise IndexError(f"item {i} of a NounsDataset of size {self.size}")
        return nth_noun(self.art, self.seed, i % self.size)


STREAM_CHUNK = 64  # Nouns the endless stream renders at once


class InfiniteNounsDataset(torch.utils.data.IterableDataset):
    """Endless stream, deterministic for a seed; yields the same dicts as NounsDataset.

    Item i of the stream equals item i of `NounsDataset(size > i, seed)`; a resumed run skips batches
    with accelerate's `skip_first_batches`. DataLoader workers split the stream (worker k of n takes
    items k, k+n, ...), so no two workers repeat an item; the batch order then depends on the number
    of workers.
    """

    def __init__(self, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError(f"seed must not be negative, got seed={seed}")
        self.seed = seed

    def __iter__(self) -> Iterator[dict]:
        worker = torch.utils.data.get_worker_info()
        offset, step = (0, 1) if worker is None else (worker.id, worker.num_workers)
        art = load_art()
        chunk = STREAM_CHUNK * step  # rendered a chunk at a time; the items and their order are the same
        for first in itertools.count(offset, chunk):
            yield from make_items(art, [nth_noun(art, self.seed, i) for i in range(first, first + chunk, step)])
