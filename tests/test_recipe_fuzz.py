"""Random mutations of the shipped recipes end in a clear RecipeError or a valid recipe, never a crash."""

from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from condiff.config import Recipe, recipe_from_dict
from condiff.errors import RecipeError

RECIPES = sorted(Path(__file__).parents[1].joinpath("recipes").glob("*.yaml"))
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
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
        message = str(err)
        assert message.startswith(str(recipe)) and "\n" not in message
        return
    assert isinstance(result, Recipe)
    assert result.train.batch_size > 0 and result.data.resolution > 0 and result.train.max_steps > 0
    assert max(result.model.channels) <= 4096 and len(result.model.channels) == len(result.model.attention)
