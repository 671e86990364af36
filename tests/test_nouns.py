"""The built-in Nouns dataset: counts, rendering checked against hand-decoded pixels, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from condiff.data.nouns import (
    PART_KINDS,
    InfiniteNounsDataset,
    Noun,
    NounsArt,
    NounsDataset,
    load_art,
    read_assets,
)


@pytest.fixture(scope="module")
def art() -> NounsArt:
    return load_art()


def rgb(hex_color: str) -> list[int]:
    return list(bytes.fromhex(hex_color))


def noun_named(art: NounsArt, **names: str) -> Noun:
    return Noun(**{kind: art.part_names[kind].index(name) for kind, name in names.items()})


def take(stream, n: int) -> list[dict]:
    return [item for item, _ in zip(stream, range(n), strict=False)]


def same_items(a: list[dict], b: list[dict]) -> bool:
    return all(
        np.array_equal(x["image"], y["image"])
        and np.array_equal(x["labels"], y["labels"])
        and x["text"] == y["text"]
        for x, y in zip(a, b, strict=True)
    )


# ---------------------------------------------------------------- the artwork


def test_part_counts_match_the_nouns_artwork(art):
    counts = {kind: art.num_parts(kind) for kind in PART_KINDS}
    assert counts == {"background": 2, "body": 30, "accessory": 143, "head": 254, "glasses": 23}
    assert art.part_names["background"] == ["cool", "warm"]
    assert "square-red" in art.part_names["glasses"]
    assert "shark" in art.part_names["head"]


def test_unknown_kind_is_an_error_naming_the_kinds(art):
    with pytest.raises(ValueError, match="glasses"):
        art.num_parts("hat")


def test_labels_follow_part_kinds_and_rebuild_the_noun():
    noun = Noun(background=1, body=2, accessory=3, head=4, glasses=5)
    assert noun.labels() == (1, 2, 3, 4, 5)
    assert Noun(*noun.labels()) == noun


def test_render_shapes_and_dtypes(art):
    nouns = [art.random_noun(np.random.default_rng(i)) for i in range(5)]
    image = art.render(nouns[0])
    batch = art.render_batch(nouns)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert batch.shape == (5, 32, 32, 3) and batch.dtype == np.uint8
    for noun, batch_image in zip(nouns, batch, strict=True):
        np.testing.assert_array_equal(art.render(noun), batch_image)
    assert art.render_batch([]).shape == (0, 32, 32, 3)


def test_body_pixel_decoded_by_hand(art):
    # body 0 (bege-bsod) is 15 17 1f 09 3a 01 ...: top=21, right=23, bottom=31, left=9, then a run of
    # 0x3a=58 pixels of palette colour 1, so (y=21, x=9) is palette[1].
    assets = read_assets()
    assert assets["parts"]["body"][0]["rle"].startswith("15171f093a01")
    assert assets["palette"][1] == "c5b9a1"
    # No accessory; head 0 (aardvark) spans rows 2-20 and the glasses rows 11-16, so nothing covers it.
    noun = noun_named(
        art, background="cool", body="bege-bsod", accessory="none", head="aardvark", glasses="hip-rose"
    )
    assert art.render(noun)[21, 9].tolist() == rgb("c5b9a1")


def test_accessory_is_drawn_over_body(art):
    # checkers-black is 15 17 1f 09 | 02 00 | 02 24 ...: on row 21, columns 9-10 are transparent and
    # columns 11-12 are palette[0x24] = black, over the body's c5b9a1.
    assert read_assets()["parts"]["accessory"][35]["rle"].startswith("15171f0902000224")
    noun = noun_named(
        art,
        background="cool",
        body="bege-bsod",
        accessory="checkers-black",
        head="aardvark",
        glasses="hip-rose",
    )
    image = art.render(noun)
    assert image[21, 11].tolist() == rgb("000000")
    assert image[21, 9].tolist() == rgb("c5b9a1")


def test_glasses_are_drawn_over_head(art):
    # head 0 (aardvark) is 02 1e 14 06 ...: left=6, and on row 11 its columns 6-18 are palette[56] = e8705b.
    # glasses 0 (hip-rose) is 0b 17 10 07 | 03 00 | 06 21 ...: top=11, left=7, columns 7-9 transparent,
    # then columns 10-15 palette[0x21] = ff638d.
    assets = read_assets()
    assert assets["parts"]["glasses"][0]["rle"].startswith("0b17100703000621")
    assert assets["palette"][56] == "e8705b" and assets["palette"][0x21] == "ff638d"
    noun = noun_named(
        art, background="cool", body="bege-bsod", accessory="none", head="aardvark", glasses="hip-rose"
    )
    image = art.render(noun)
    assert image[11, 10].tolist() == rgb("ff638d")  # covered by both: glasses win
    assert image[11, 7].tolist() == rgb("e8705b")  # transparent in the glasses: head shows through


@pytest.mark.parametrize(("background", "color"), [("cool", "d5d7e1"), ("warm", "e1d7d5")])
def test_background_shows_where_nothing_is_drawn(art, background, color):
    # No part reaches row 0, so the corner is always background.
    rng = np.random.default_rng(0)
    for _ in range(20):
        noun = art.random_noun(rng)
        noun = Noun(art.part_names["background"].index(background), *noun.labels()[1:])
        assert art.render(noun)[0, 0].tolist() == rgb(color)


def test_out_of_range_part_is_an_error_not_another_part(art):
    with pytest.raises(IndexError, match="head"):
        art.render(Noun(background=0, body=0, accessory=0, head=-1, glasses=0))
    with pytest.raises(IndexError, match="glasses"):
        art.render(Noun(background=0, body=0, accessory=0, head=0, glasses=23))


def test_fresh_art_renders_the_same_pixels(art):
    fresh = NounsArt(read_assets())
    nouns = [art.random_noun(np.random.default_rng(i)) for i in range(16)]
    np.testing.assert_array_equal(fresh.render_batch(nouns), art.render_batch(nouns))


def test_random_noun_covers_every_kind_uniformly_enough(art):
    rng = np.random.default_rng(0)
    labels = np.array([art.random_noun(rng).labels() for _ in range(2000)])
    for column, kind in enumerate(PART_KINDS):
        assert labels[:, column].min() >= 0 and labels[:, column].max() < art.num_parts(kind)
    assert len(set(labels[:, 4])) == art.num_parts("glasses")  # 2000 draws hit all 23


# ---------------------------------------------------------------- captions


def test_caption_names_every_part(art):
    noun = noun_named(
        art,
        background="cool",
        body="bege-bsod",
        accessory="txt-noun-multicolor",
        head="shark",
        glasses="square-red",
    )
    assert art.caption(noun) == (
        "a pixel art character with square red glasses, a shark head, a bege bsod body "
        "and a txt noun multicolor accessory on a cool background"
    )


def test_caption_reads_naturally_for_vowels_and_no_accessory(art):
    names = {"background": "warm", "body": "orange", "accessory": "none", "glasses": "hip-rose"}
    caption = art.caption(noun_named(art, head="aardvark", **names))
    assert "an aardvark head" in caption and "an orange body" in caption
    assert "and no accessory on a warm background" in caption
    assert "a unicorn head" in art.caption(noun_named(art, head="unicorn", **names))


# ---------------------------------------------------------------- datasets


def test_dataset_items(art):
    dataset = NounsDataset(size=10, seed=0)
    item = dataset[3]
    assert len(dataset) == 10
    assert item["image"].shape == (32, 32, 3) and item["image"].dtype == np.uint8
    assert item["labels"].shape == (5,) and item["labels"].dtype == np.int64
    noun = dataset.noun(3)
    assert tuple(item["labels"]) == noun.labels()
    np.testing.assert_array_equal(item["image"], art.render(noun))
    assert item["text"] == art.caption(noun)
    assert dataset.noun(-1) == dataset.noun(9)
    with pytest.raises(IndexError):
        dataset[10]


def test_dataset_is_deterministic_for_a_seed():
    first = list(NounsDataset(size=32, seed=7))
    assert same_items(first, list(NounsDataset(size=32, seed=7)))
    other = [item["labels"].tolist() for item in NounsDataset(size=32, seed=8)]
    assert [item["labels"].tolist() for item in first] != other


def test_item_depends_only_on_seed_and_index():
    assert NounsDataset(size=100, seed=3).noun(5) == NounsDataset(size=6, seed=3).noun(5)


def test_dataset_nouns_are_pinned_across_runs():
    # A changed derivation would silently change every seeded recipe's data; these are the
    # Nouns of np.random.default_rng([0, i]).
    nouns = [NounsDataset(size=2, seed=0).noun(i).labels() for i in range(2)]
    assert nouns == [(1, 19, 73, 68, 7), (1, 26, 141, 141, 6)]


def test_dataset_batches_through_a_dataloader():
    batch = next(iter(torch.utils.data.DataLoader(NounsDataset(size=8), batch_size=8)))
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == torch.uint8
    assert batch["labels"].shape == (8, 5) and len(batch["text"]) == 8


def test_a_shuffled_batch_holds_the_same_items_as_indexing_one_by_one():
    dataset = NounsDataset(size=40, seed=4)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:16].tolist()
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=16, sampler=order)))
    one_by_one = [dataset[i] for i in order]
    assert torch.equal(batch["image"], torch.stack([torch.from_numpy(item["image"]) for item in one_by_one]))
    assert batch["labels"].tolist() == [item["labels"].tolist() for item in one_by_one]
    assert batch["text"] == [item["text"] for item in one_by_one]


def test_infinite_stream_is_deterministic_and_matches_the_fixed_dataset():
    stream = take(InfiniteNounsDataset(seed=5), 20)
    assert same_items(stream, take(InfiniteNounsDataset(seed=5), 20))
    assert same_items(stream, list(NounsDataset(size=20, seed=5)))
    # Past the first chunk the stream renders (see STREAM_CHUNK).
    assert same_items(take(InfiniteNounsDataset(seed=5), 150), list(NounsDataset(size=150, seed=5)))
    other = [item["labels"].tolist() for item in take(InfiniteNounsDataset(seed=6), 20)]
    assert [item["labels"].tolist() for item in stream] != other


def test_infinite_stream_workers_do_not_repeat_items():
    loader = torch.utils.data.DataLoader(InfiniteNounsDataset(seed=2), batch_size=4, num_workers=2)
    seen = [tuple(labels) for batch in take(loader, 4) for labels in batch["labels"].tolist()]
    expected = [item["labels"].tolist() for item in NounsDataset(size=16, seed=2)]
    assert sorted(seen) == sorted(tuple(labels) for labels in expected)
