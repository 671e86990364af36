"""Recipes: defaults, overrides, and errors that name the key and the file."""

import pytest

from condiff.config import Recipe, load_recipe, recipe_from_dict, save_recipe
from condiff.errors import RecipeError


def write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_recipe_lists_only_differences(tmp_path):
    recipe = load_recipe(write(tmp_path, "train:\n  lr: 0.001\n"))
    assert recipe.train.lr == 0.001
    assert recipe.train.batch_size == Recipe().train.batch_size  # default untouched


def test_overrides_are_parsed_like_yaml(tmp_path):
    recipe = load_recipe(write(tmp_path, "train:\n  lr: 0.001\n"),
                         ["train.lr=2e-4", "data.size=null", "model.channels=[32, 64]",
                          "model.attention=[false, true]", "train.ema=false"])
    assert recipe.train.lr == 2e-4
    assert recipe.data.size is None
    assert recipe.model.channels == [32, 64]
    assert recipe.train.ema is False


def test_int_accepted_for_float():
    assert recipe_from_dict({"train": {"lr": 1}}).train.lr == 1.0


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"train": {"lrr": 1e-4}}, "did you mean 'lr'"),
        ({"trian": {}}, "did you mean 'train'"),
        ({"train": {"batch_size": "big"}}, "train.batch_size = 'big' has the wrong type: expected an integer"),
        ({"train": {"batch_size": 2.5}}, "train.batch_size"),
        ({"train": {"ema": 1}}, "expected true/false"),
        ({"train": {"batch_size": -4}}, "must be greater than 0"),
        ({"scheduler": {"beta_schedule": "cosine"}}, "is not one of linear, scaled_linear, squaredcos_cap_v2"),
        ({"model": {"channels": [32, 64], "attention": [False]}}, "give one true/false per level"),
        ({"model": {"channels": [30, 64], "attention": [False, True]}}, "multiple of model.norm_num_groups"),
        ({"data": {"resolution": 30}}, "must be divisible by 4"),
        # found by tests/test_recipe_fuzz.py: a 1x1 bottom with one channel per group cannot sample one image
        ({"data": {"resolution": 4}, "model": {"channels": [32, 32, 32], "attention": [False] * 3}},
         "leaves a 1x1 feature map where GroupNorm groups of model.channels 32 / model.norm_num_groups 32"),
        ({"train": {"lr": float("nan")}}, "finite"),
        ({"data": {"resolution": 10**9}}, "too large"),
        ({"train": "fast"}, "section 'train' must be a mapping"),
    ],
)
def test_bad_values_name_the_key(values, fragment):
    with pytest.raises(RecipeError, match=None) as info:
        recipe_from_dict(values, origin="my.yaml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("my.yaml")


def test_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(RecipeError, match="expected section.key=value"):
        load_recipe(None, ["lr=3"])


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(None, ["train.max_steps=7"])
    save_recipe(recipe, tmp_path / "resolved.yaml")
    assert load_recipe(tmp_path / "resolved.yaml") == recipe


def test_shipped_recipes_are_valid():
    from pathlib import Path

    for path in sorted(Path(__file__).parents[1].joinpath("recipes").glob("*.yaml")):
        load_recipe(path)
