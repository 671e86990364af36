"""Random mutations of the shipped recipes end in a clear RecipeError or a valid recipe, never a crash."""

import math
import typing
from pathlib import Path

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from condiff.conditions import build_encoder, get_condition, list_conditions
from condiff.config import RANGES, Recipe, recipe_from_dict
from condiff.errors import RecipeError

RECIPES = sorted(Path(__file__).parents[1].joinpath("recipes").glob("*.yaml"))
# Numbers at the edges of what Python, numpy and torch hold: 32- and 64-bit limits, beyond any float
# (10**400), too long to print (10**5000), subnormal and largest floats; as YAML 1.1 strings too.
EXTREMES = [0, -1, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**70, -(2**70),
            10**400, 10**5000, -0.0, 5e-324, 1e-300, 1e300, 1.7976931348623157e308, 0.999999, 1.0000001]
NUMBERS = st.one_of(
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(EXTREMES),
    st.sampled_from(["nan", "inf", "-inf", ".nan", "1e999", "-1e999", "1e300", "2e-4"]),
)
VALUES = st.one_of(
    st.none(), st.booleans(), NUMBERS, st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=300), max_size=4), st.dictionaries(st.text(max_size=5), st.integers()),
)
KEYS = st.sampled_from(["data", "model", "scheduler", "train"]).flatmap(
    lambda section: st.tuples(st.just(section), st.one_of(
        st.sampled_from(sorted(getattr(Recipe(), section).__dataclass_fields__)), st.text(min_size=1, max_size=8))))


@settings(max_examples=300, deadline=None, derandomize=True)  # the same cases in every CI run
@given(recipe=st.sampled_from(RECIPES), mutations=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3))
def test_mutated_recipes_fail_cleanly_or_validate(recipe, mutations):
    values = yaml.safe_load(recipe.read_text())
    for (section, key), value in mutations:
        values.setdefault(section, {})[key] = value
    try:
        result = recipe_from_dict(values, origin=str(recipe))
    except RecipeError as err:
        check_message(err, str(recipe))
        return
    assert isinstance(result, Recipe)
    assert_in_range(result)
    assert len(result.model.channels) == len(result.model.attention)


def assert_in_range(recipe: Recipe) -> None:
    """Every numeric key of an accepted recipe (each entry of a list) lies in its documented range."""
    for key, bounds in RANGES.items():
        if key.startswith("conditions."):
            assert all(spec.dropout in bounds for spec in recipe.conditions)
            continue
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        for item in value if isinstance(value, list) else [value]:
            assert item is None or (item in bounds and not isinstance(item, bool)), (key, value)


def check_message(err: RecipeError, origin: str) -> None:
    message = str(err)
    assert message.startswith(origin) and "\n" not in message and len(message) < 600, message


# ---------------------------------------------------------------------------------------------------
# Every numeric key over its whole range, at the validation level
# ---------------------------------------------------------------------------------------------------

NUMERIC_KEYS = sorted(key for key in RANGES if not key.startswith("conditions."))
LIST_KEYS = {"model.channels": [32, None, 128], "data.background": [255, None, 255]}  # None: the fuzzed entry


def near_edges(key: str) -> st.SearchStrategy:
    """The ends of a key's range and their neighbours: just inside and just outside."""
    import math

    bounds = RANGES[key]
    low, high = bounds.low, bounds.high
    return st.sampled_from([low, high, low - 1, high + 1, math.nextafter(low, -math.inf), math.nextafter(low, math.inf),
                            math.nextafter(high, -math.inf), math.nextafter(high, math.inf), low * 2 + 1, high * 2])


MUTATION = st.sampled_from(NUMERIC_KEYS).flatmap(
    lambda key: st.tuples(st.just(key), st.one_of(NUMBERS, near_edges(key))))


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
@example(mutations=[("train.seed", 10**5000)])
@example(mutations=[("train.lr", 10**400)])
@example(mutations=[("model.channels", 2**70)])
def test_every_numeric_key_over_its_whole_range(mutations):
    """recipe_from_dict returns a recipe whose numbers all lie in RANGES, or raises a one-line RecipeError;
    never anything else."""
    values: dict = {}
    for key, value in mutations:
        section, name = key.split(".")
        if key in LIST_KEYS:
            value = [value if item is None else item for item in LIST_KEYS[key]]
        values.setdefault(section, {})[name] = value
    try:
        result = recipe_from_dict(values, origin="fuzz.yaml")
    except RecipeError as err:
        check_message(err, "fuzz.yaml")
        return
    assert_in_range(result)


def encoder_numbers() -> list[str]:
    """"name.setting" for every numeric (int or float) setting of the built-in encoders; each encoder's
    __init__ holds its range."""
    keys = []
    for name in list_conditions():
        encoder = get_condition(name)
        if encoder.__module__.startswith("condiff.conditions."):
            hints = typing.get_type_hints(encoder.__init__)
            keys += [f"{name}.{key}" for key, tp in hints.items() if tp in (int, float)]
    return sorted(keys)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(key=st.sampled_from(encoder_numbers()), value=NUMBERS,
       dropout=st.one_of(st.just(0.1), NUMBERS, near_edges("conditions.dropout")))
@example(key="sketch.thickness_jitter", value=10_000, dropout=0.1)
@example(key="lowres.factor", value=10**5000, dropout=0.1)
def test_every_encoder_setting_over_its_whole_range(key, value, dropout):
    """The built-in encoders' numeric settings (and a condition's dropout) likewise, checked against the
    encoders as `condiff train` checks them: a value their __init__ refuses is a one-line RecipeError."""
    name, setting = key.split(".")
    try:
        result = recipe_from_dict({"conditions": [{"name": name, setting: value, "dropout": dropout}]}, "fuzz.yaml",
                                  check_condition=build_encoder)
    except RecipeError as err:
        check_message(err, "fuzz.yaml")
        return
    (spec,) = result.conditions
    encoder = build_encoder(spec, "fuzz.yaml: conditions[0]")  # the settings as the encoder receives them
    assert math.isfinite(encoder.config[setting]) and spec.dropout in RANGES["conditions.dropout"]


# ---------------------------------------------------------------------------------------------------
# Mutated tiny recipes, trained for real through `condiff train`
# ---------------------------------------------------------------------------------------------------

# Each key gets a value that passes its own check (the first is the base recipe's); then at most one key
# gets one that does not. Combinations can still be refused: channels 12 with 8 groups, resolution 12
# with 3 levels, a batch larger than the dataset. Whatever is not refused must train.
VALID = {
    "train.batch_size": [4, 1, 2, 8],
    "train.max_steps": [1, 2],
    "train.grad_accum": [1, 2],
    "data.resolution": [8, 16, 4, 12],
    "data.size": [8, 16, 4],
    "model.channels": [[8, 16], [8], [16, 16, 8], [8, 12]],
    "model.attention": ["off", "on"],
    "model.norm_num_groups": [8, 4, 2],
}
INVALID = {
    "train.batch_size": [0, -1, "4", 2.5],
    "train.max_steps": [0, -3, 1.5],
    "train.grad_accum": [0, -2],
    "data.resolution": [7, 0, 2048],
    "data.size": [0, -8],
    "model.channels": [[], [0], [-8, 8], [8] * 9],
    "model.attention": ["wrong length"],
    "model.norm_num_groups": [0, 3],
}
KEYS = sorted(VALID)


def base(**changes) -> dict:
    """The base recipe's values (each key's first valid one), with `changes`."""
    return {**{key: VALID[key][0] for key in KEYS}, **changes}


VALID_VALUES = st.fixed_dictionaries({key: st.sampled_from(VALID[key]) for key in KEYS})
INVALID_VALUES = st.lists(st.sampled_from(KEYS), max_size=1).flatmap(
    lambda keys: st.fixed_dictionaries({key: st.sampled_from(INVALID[key]) for key in keys}))


def tiny_trainable(output_dir) -> dict:
    from tests.conftest import tiny_values

    values = tiny_values(output_dir, max_steps=1, checkpoint_every=0, keep_checkpoints=1, sample_num=1, ema=True)
    values["data"] = {"size": 8, "resolution": 8, "random_flip": True}
    values["model"] = {"channels": [8, 16], "attention": [False, False], "norm_num_groups": 8,
                       "attention_head_dim": 4, "layers_per_block": 1}
    return values


def test_mutated_tiny_recipes_train_or_fail_cleanly(tmp_path_factory):
    """Each run ends in exit 0 with a saved model or exit 2 with one error line; nothing else escapes."""
    import contextlib
    import io

    from condiff.cli.main import main

    outcomes = []

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(valid=VALID_VALUES, invalid=INVALID_VALUES)
    # Edges that random draws may miss, tried first in every run:
    @example(valid=base(**{"model.channels": [8, 12]}), invalid={})  # not a multiple of the 8 groups
    @example(valid=base(**{"train.batch_size": 8, "data.size": 4}), invalid={})  # no full batch
    @example(valid=base(**{"data.resolution": 12, "model.channels": [16, 16, 8]}), invalid={})  # 12 / 4 levels
    @example(valid=base(**{"data.resolution": 4, "model.channels": [16, 16, 8], "model.attention": "on"}),
             invalid={})  # attention on a 1x1 bottleneck
    @example(valid=base(**{"train.grad_accum": 2, "train.max_steps": 2, "train.batch_size": 1}), invalid={})
    def train_mutated(valid, invalid):
        folder = tmp_path_factory.mktemp("fuzz")
        values = tiny_trainable(folder / "run")
        mutated = {**valid, **invalid}
        for key, value in mutated.items():
            section, name = key.split(".")
            values[section][name] = value
        levels = len(values["model"]["channels"]) if isinstance(values["model"]["channels"], list) else 1
        values["model"]["attention"] = {"off": [False] * levels, "on": [True] * levels,
                                        "wrong length": [False] * (levels + 1)}[mutated.get("model.attention", "off")]
        recipe = folder / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(values))
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(["train", str(recipe)])  # any exception but a CondiffError fails the test here
        stderr = err.getvalue()
        assert "Traceback" not in stderr
        if code == 0:
            run = folder / "run"
            assert (run / "model_index.json").is_file() and (run / "unet/diffusion_pytorch_model.safetensors").is_file()
            assert f"condiff: trained {values['train']['max_steps']} steps" in out.getvalue()
        else:
            assert code == 2, stderr
            lines = stderr.strip().splitlines()
            assert lines[-1].startswith("condiff: error:") and stderr.count("condiff: error:") == 1, stderr
        outcomes.append(code)

    train_mutated()
    # Both ends are exercised: real trainings and clean refusals.
    assert outcomes.count(0) >= 5 and outcomes.count(2) >= 5, outcomes
