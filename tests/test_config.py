"""Recipes: defaults, overrides, and errors that name the key and the file."""

import pytest

from condiff.conditions import build_encoder
from condiff.config import Recipe, load_recipe, recipe_from_dict, save_recipe
from condiff.errors import RecipeError
from tests.conftest import write_recipe_text


def test_recipe_lists_only_differences(tmp_path):
    recipe = load_recipe(write_recipe_text(tmp_path, "train:\n  lr: 0.001\n"))
    assert recipe.train.lr == 0.001
    assert recipe.train.batch_size == Recipe().train.batch_size  # default untouched


def test_overrides_are_parsed_like_yaml(tmp_path):
    recipe = load_recipe(write_recipe_text(tmp_path, "train:\n  lr: 0.001\n"),
                         ["train.lr=2e-4", "data.size=null", "model.channels=[32, 64]",
                          "model.attention=[false, true]", "train.ema=false"])
    assert recipe.train.lr == 2e-4
    assert recipe.data.size is None
    assert recipe.model.channels == [32, 64]
    assert recipe.train.ema is False


def test_documented_words_no_and_off_stay_words(tmp_path):
    # YAML 1.1 would read them as false; the recipe keys document them as strings.
    path = write_recipe_text(tmp_path, "data:\n  palette: off\ntrain:\n  mixed_precision: no\n")
    recipe = load_recipe(path)
    assert (recipe.data.palette, recipe.train.mixed_precision) == ("off", "no")
    recipe = load_recipe(write_recipe_text(tmp_path, "{}\n", "empty.yaml"),
                         ["train.mixed_precision=no", "data.palette=off"])
    assert (recipe.data.palette, recipe.train.mixed_precision) == ("off", "no")
    with pytest.raises(RecipeError, match="data.random_flip = 'yes' has the wrong type: expected true/false"):
        load_recipe(write_recipe_text(tmp_path, "data:\n  random_flip: yes\n", "yes.yaml"))


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
        ({"train": {"batch_size": -4}}, "train.batch_size = -4 must be from 1 to 65536"),
        ({"scheduler": {"beta_schedule": "cosine"}}, "is not one of linear, scaled_linear, squaredcos_cap_v2"),
        ({"model": {"channels": [32, 64], "attention": [False]}}, "give one true/false per level"),
        ({"model": {"channels": [30, 64], "attention": [False, True]}}, "multiple of model.norm_num_groups"),
        ({"data": {"resolution": 30}}, "must be divisible by 4"),
        # found by tests/test_recipe_fuzz.py: a 1x1 bottom with one channel per group cannot sample one image
        ({"data": {"resolution": 4}, "model": {"channels": [32, 32, 32], "attention": [False] * 3}},
         "leaves a 1x1 feature map where GroupNorm groups of model.channels 32 / model.norm_num_groups 32"),
        ({"train": {"lr": float("nan")}}, "finite"),
        ({"data": {"resolution": 10**9}}, "data.resolution = 1000000000 must be from 1 to 1024"),
        ({"model": {"channels": [32, 8192], "attention": [False, False]}}, "model.channels[1] = 8192 must be from 1"),
        ({"train": {"adam_beta1": 1.0}}, "must be at least 0 and below 1 (torch's AdamW needs 0 <= beta < 1)"),
        ({"train": {"lr": 0}}, "train.lr = 0.0 must be greater than 0 and at most 1"),
        ({"train": {"max_minutes": float("inf")}}, "train.max_minutes = inf must be a finite number"),
        ({"train": 0}, "section 'train' must be a mapping"),
        ({"conditions": 0}, "conditions must be a list"),
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
        load_recipe(write_recipe_text(tmp_path, "train: [unclosed\n"))
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(write_recipe_text(tmp_path, "- a\n- b\n"))
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


# ---------------------------------------------------------------------------------------------------
# conditions: checked against the registered encoders (condiff.conditions.build_encoder, the check that
# `condiff train` hands load_recipe), errors naming the file
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conditions, fragment",
    [
        ([{"name": "cany"}], "conditions[0]: unknown condition 'cany' (did you mean 'canny'?); known conditions: "),
        ([{"name": "sketch"}, {"name": "canny", "low_treshold": 50}],
         "conditions[1]: unknown setting 'low_treshold' for condition 'canny' (did you mean 'low_threshold'?)"),
        ([{"name": "canny", "low_threshold": 200, "high_threshold": 100}],
         "conditions[0]: bad value for condition 'canny': canny thresholds need 0 <= low_threshold <= high_threshold"),
        ([{"name": "sketch", "max_shift": "far"}],
         "conditions[0].max_shift = 'far' has the wrong type: expected a number"),
        ([{"name": "lowres", "factor": 2.5}], "conditions[0].factor = 2.5 has the wrong type: expected an integer"),
        ([{"name": "grayscale", "dropout": 1.5}], "conditions[0].dropout = 1.5 must be a number in [0, 1)"),
        ([{"name": "grayscale", "dropout": True}], "conditions[0].dropout = True must be a number in [0, 1)"),
        ([{"dropout": 0.1}], "conditions[0] must be a mapping with a name"),
        ({"name": "sketch"}, "conditions must be a list"),
    ],
)
def test_bad_conditions_name_the_file_and_the_entry(tmp_path, conditions, fragment):
    import yaml

    path = write_recipe_text(tmp_path, yaml.safe_dump({"conditions": conditions}), name="x.yaml")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, check_condition=build_encoder)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_unknown_condition_lists_the_known_ones(tmp_path):
    path = write_recipe_text(tmp_path, "conditions:\n  - name: blurry\n", name="x.yaml")
    with pytest.raises(RecipeError, match=r"known conditions: .*canny.*grayscale.*sketch") as info:
        load_recipe(path, check_condition=build_encoder)
    assert str(info.value).startswith(f"{path}: conditions[0]: unknown condition 'blurry'")


def test_without_a_check_only_the_form_of_conditions_is_checked():
    """config imports no encoder: it checks a condition's form, the caller's check_condition the rest."""
    from condiff.config import ConditionSpec

    recipe = recipe_from_dict({"conditions": [{"name": "blurry", "radius": 3}]})
    assert recipe.conditions == [ConditionSpec("blurry", 0.0, {"radius": 3})]
    with pytest.raises(RecipeError, match=r"^recipe: conditions\[0\]\.dropout = 2 must be a number in \[0, 1\)$"):
        recipe_from_dict({"conditions": [{"name": "blurry", "dropout": 2}]})


def test_conditions_are_typed_and_written_flat(tmp_path):
    from condiff.config import ConditionSpec

    text = "conditions:\n  - name: canny\n    low_threshold: 50\n  - {name: grayscale, dropout: 0.2}\n"
    recipe = load_recipe(write_recipe_text(tmp_path, text))
    assert recipe.conditions == [ConditionSpec("canny", 0.0, {"low_threshold": 50}), ConditionSpec("grayscale", 0.2)]
    assert recipe.to_dict()["conditions"] == [{"name": "canny", "dropout": 0.0, "low_threshold": 50},
                                              {"name": "grayscale", "dropout": 0.2}]
    save_recipe(recipe, tmp_path / "resolved.yaml")
    assert load_recipe(tmp_path / "resolved.yaml") == recipe


def test_a_checkpoint_recipe_without_condition_dropout_still_compares_equal():
    from condiff.config import flatten

    recipe = recipe_from_dict({"conditions": [{"name": "grayscale"}]})
    saved_before = {**recipe.to_dict(), "conditions": [{"name": "grayscale"}]}  # as recipes were written
    assert flatten(saved_before) == flatten(recipe.to_dict())
