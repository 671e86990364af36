"""Training sources: image folders, save_to_disk / parquet datasets, and pixel-art preprocessing."""

import numpy as np
import pytest
from PIL import Image

from condiff.config import recipe_from_dict
from condiff.data.preprocess import prepare_image
from condiff.data.sources import build_dataset, describe_source
from condiff.errors import DataError, RecipeError


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


def test_folder_images_are_upright_for_all_eight_exif_orientations(tmp_path):
    from tests.test_images import blocks, save_with_orientation

    upright = blocks(3, 3)  # square, so the centre crop keeps all of it; asymmetric inside
    for orientation in range(1, 9):
        save_with_orientation(tmp_path / f"o{orientation}.png", upright, orientation)
    dataset = build_dataset(data_config(source=str(tmp_path), resolution=24))
    assert len(dataset) == 8
    for orientation in range(1, 9):
        np.testing.assert_array_equal(dataset[orientation - 1]["image"], upright, err_msg=f"orientation {orientation}")


def test_bad_files_fail_or_are_skipped(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / "a_empty.png").write_bytes(b"")
    (tmp_path / "b_notes.png").write_text("not a picture")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    (tmp_path / "c_cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:300])
    (tmp_path / "d_folder.png").mkdir()  # not a file: not listed at all
    # fail (the default): a one-line error naming the first bad file and the way out
    with pytest.raises(DataError) as caught:
        build_dataset(data_config(source=str(tmp_path), resolution=8, center_crop=False))
    message = str(caught.value)
    assert "a_empty.png" in message and "data.bad_images: skip" in message and "\n" not in message
    # skip: left out, counted and reported
    dataset = build_dataset(data_config(source=str(tmp_path), resolution=8, bad_images="skip"))
    assert len(dataset) == 2 and [p.name for p in dataset.skipped] == ["a_empty.png", "b_notes.png", "c_cut.png"]
    assert "skipped 3 unreadable image(s)" in capsys.readouterr().out
    with pytest.raises(RecipeError, match="data.bad_images = 'ignore' is not one of skip, fail"):
        data_config(bad_images="ignore")


# Each mode as a file, through the folder source to the model tensor and through an encoder's input
# path: (mode, extension, pixels of a 2x2 image, the 8-bit RGB it must become over a white background).
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
MODE_FILES = {
    "1": ("1", ".png", [[0, 1], [1, 0]], [[0, 255], [255, 0]]),
    "L": ("L", ".png", [[0, 128], [255, 64]], [[0, 128], [255, 64]]),
    "LA": ("LA", ".png", [[(0, 255), (0, 0)], [(255, 255), (90, 255)]], [[0, 255], [255, 90]]),
    "P+transparency": ("P", ".png", [[0, 1], [1, 0]], [[WHITE, BLUE], [BLUE, WHITE]]),
    "RGBA": ("RGBA", ".png", [[(255, 0, 0, 255), (9, 9, 9, 0)], [(0, 0, 255, 255), (9, 9, 9, 0)]],
             [[RED, WHITE], [BLUE, WHITE]]),
    "CMYK": ("CMYK", ".tif", [[(255, 0, 0, 0), (0, 0, 0, 0)], [(0, 0, 0, 255), (0, 255, 0, 0)]],
             [[(0, 255, 255), WHITE], [(0, 0, 0), (255, 0, 255)]]),
    # 16-bit is scaled, not clipped: 65535 is white and 32768 mid grey.
    "I;16": ("I;16", ".tif", [[0, 32768], [65535, 255]], [[0, 128], [255, 1]]),
    # 32-bit float: values within [0, 1] are fractions of white ...
    "F 0..1": ("F", ".tif", [[0.0, 0.5], [1.0, 0.25]], [[0, 128], [255, 64]]),
    # ... larger values are read on the 0..255 scale; beyond it they are clipped.
    "F 0..255": ("F", ".tif", [[0.0, 100.0], [300.0, -5.0]], [[0, 100], [255, 0]]),
}


def _mode_image(mode: str, pixels) -> Image.Image:
    if mode == "I;16":
        return Image.frombytes(mode, (2, 2), np.array(pixels, "<u2").tobytes())
    if mode == "F":
        return Image.fromarray(np.array(pixels, np.float32))
    if mode == "P":
        image = Image.fromarray(np.array(pixels, np.uint8), "L").convert("P")
        image.putpalette([*RED, *BLUE])  # index 0 red (transparent below), index 1 blue
        image.info["transparency"] = 0
        return image
    image = Image.new(mode, (2, 2))
    for y, row in enumerate(pixels):
        for x, value in enumerate(row):
            image.putpixel((x, y), value)
    return image


@pytest.mark.parametrize("case", MODE_FILES)
def test_every_mode_reaches_the_model_tensor_in_range(tmp_path, case):
    from condiff.conditions.grayscale import GrayscaleCondition
    from condiff.images import luma, open_image, to_model_tensor

    mode, extension, pixels, rgb = MODE_FILES[case]
    path = tmp_path / f"image{extension}"
    image = _mode_image(mode, pixels)
    image.save(path, **({"transparency": 0} if mode == "P" else {}))
    assert open_image(path).mode == mode  # the file really holds this mode
    expected = np.array(rgb, np.uint8)
    if expected.ndim == 2:
        expected = np.repeat(expected[..., None], 3, axis=-1)
    expected = expected.repeat(2, axis=0).repeat(2, axis=1)  # nearest upscaling to 4 px (3 UNet levels)
    expected_tensor = expected[None].astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0

    dataset = build_dataset(data_config(source=str(tmp_path), resolution=4))
    tensor = to_model_tensor(dataset[0]["image"][None])
    assert tensor.dtype.is_floating_point and tensor.min() >= -1.0 and tensor.max() <= 1.0
    np.testing.assert_allclose(tensor.numpy(), expected_tensor, atol=1e-6)
    # A user's input image takes the encoders' path: the same pixels, as a condition.
    condition = GrayscaleCondition(resize="nearest").encode_input(open_image(path), 4)
    np.testing.assert_allclose(condition.numpy(), luma(tensor).numpy(), atol=1e-6)


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


def test_an_unreachable_hub_dataset_is_one_line(tmp_path, capfd, monkeypatch):
    """Offline, huggingface_hub logs a line per retry before giving up (about 25 s here): only condiff's
    one-line error may reach the user. The loader is replaced by one that logs and fails as it does."""
    import datasets
    from huggingface_hub.utils import logging as hub_logging

    from condiff.cli.main import main

    def offline(*args, **kwargs):
        hub_logging.get_logger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise ConnectionError("Couldn't reach 'someone/no-such-dataset' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["data", "preview", "someone/no-such-dataset", "--num", "4", "--out", str(tmp_path / "p.png")]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("condiff: error: data.source") and len(err.splitlines()) == 1, err
