"""docs/train.md names every recipe key, and nothing that is not one: the docs cannot drift from the config."""

import dataclasses
import re
from pathlib import Path

from condiff.config import Recipe

ROOT = Path(__file__).parents[1]


def test_train_doc_lists_every_recipe_key():
    text = (ROOT / "docs" / "train.md").read_text()
    listed = {}
    for section, body in re.findall(r"^- \*\*(\w+)\*\*: (.*?)(?=^- \*\*|^\s*$)", text, re.S | re.M):
        listed[section] = set(re.findall(r"`(\w+)`", body))
    recipe = Recipe()
    for field in dataclasses.fields(recipe):
        if field.name == "conditions":
            assert "conditions" in listed
            continue
        keys = {f.name for f in dataclasses.fields(getattr(recipe, field.name))}
        documented = listed.get(field.name, set())
        assert keys - documented == set(), f"{field.name}: not in docs/train.md: {sorted(keys - documented)}"
