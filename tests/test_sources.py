"""Training sources: image folders, save_to_disk / parquet datasets, and pixel-art preprocessing."""

import numpy as np
import pytest
from PIL import Image

from condiff.config import recipe_from_dict
from condiff.data.preprocess import prepare_image
from condiff.data.sources import build_dataset, describe_source
from condiff.errors import DataError


def data_config(**values):
    return recipe_from_dict({"data": values}).data


def test_nearest_resize_keeps_the_palette():
    rng = np.random.default_rng(0)
    palette = np.array([[255, 0, 0], [0, 128, 255], [20, 20, 20]], np.uint8)
    art = palette[rng.integers(0, 3, (8, 8))]
    out = prepare_image(Image.fromarray(art), 32)
    assert {tuple(c) for c in out.reshape(-1, 3)} <= {tuple(c) for c in palette}
    smooth = prepare_image(Image.fromarray(art), 32, resize="bicubic")
    assert len({tuple(c) for c in smooth.reshape(-1, 3)}) > 3


def test_center_crop_keeps_aspect():
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # a white square in the middle
    out = prepare_image(Image.fromarray(wide), 10)
    assert out.shape == (10, 10, 3) and out.min() == 255
    squeezed = prepare_image(Image.fromarray(wide), 10, center_crop=False)
    assert squeezed.min() == 0


def test_folder_of_mixed_modes(tmp_path):
    Image.new("RGBA", (16, 16), (255, 0, 0, 0)).save(tmp_path / "a_transparent.png")
    Image.new("L", (16, 16), 128).save(tmp_path / "b_gray.png")
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(tmp_path / "c_16bit.png")
    Image.new("RGB", (20, 16), (0, 255, 0)).convert("P").save(tmp_path / "d_palette.gif")
    dataset = build_dataset(data_config(source=str(tmp_path), resolution=16, background=[0, 0, 255]))
    images = [dataset[i]["image"] for i in range(len(dataset))]
    assert len(images) == 4 and all(img.shape == (16, 16, 3) for img in images)
    assert tuple(images[0][0, 0]) == (0, 0, 255)  # transparent -> background
    assert tuple(images[1][0, 0]) == (128, 128, 128)
    assert tuple(images[2][0, 0]) == (255, 255, 255)  # 16-bit white stays white
    assert tuple(images[3][0, 0]) == (0, 255, 0)


def test_bad_files_fail_or_are_skipped(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty.png"):
        build_dataset(data_config(source=str(tmp_path), resolution=8, center_crop=False))
    dataset = build_dataset(data_config(source=str(tmp_path), resolution=8, bad_images="skip"))
    assert len(dataset) == 1 and len(dataset.skipped) == 1


def test_parquet_and_disk_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (8, 8), (i * 30, 0, 0)) for i in range(5)]
    ds = datasets.Dataset.from_dict({"picture": images, "text": [f"red {i}" for i in range(5)]},
                                    features=datasets.Features({"picture": datasets.Image(),
                                                                "text": datasets.Value("string")}))
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "disk"))
    for source in (tmp_path / "d.parquet", tmp_path / "disk"):
        with pytest.raises(DataError, match="its columns are picture, text"):
            build_dataset(data_config(source=str(source), resolution=8))
        loaded = build_dataset(data_config(source=str(source), resolution=8, image_column="picture", size=3))
        assert len(loaded) == 3 and tuple(loaded[2]["image"][0, 0]) == (60, 0, 0)
        assert loaded[2]["text"] == "red 2"


def test_source_kinds(tmp_path):
    assert describe_source("nouns") == "nouns"
    assert describe_source("m1guelpf/nouns") == "hub"
    assert describe_source(str(tmp_path)) == "folder"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        describe_source(str(tmp_path / "notes.txt"))
    with pytest.raises(DataError, match="not a Hub id"):
        describe_source("./missing/folder")


def test_nouns_source_sizes():
    assert len(build_dataset(data_config(size=10))) == 10
    upscaled = build_dataset(data_config(size=2, resolution=64))
    assert upscaled[0]["image"].shape == (64, 64, 3)
