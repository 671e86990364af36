"""Hostile and absurd inputs: YAML alias bombs, duplicate keys, numbers out of range (recipe keys, encoder
settings, command-line options), non-finite guidance, broken plugins. Each is one line
`condiff: error: ...` (or a RecipeError), exit 2, nothing written, and quick."""

import math
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from condiff.cli.main import main
from condiff.conditions import build_encoder
from condiff.config import load_recipe, recipe_from_dict
from condiff.errors import RecipeError
from tests.conftest import one_line_error, paths_under, write_recipe_text

# A 9-level anchor chain as one flow list: about 600 bytes that expand to 10**9 strings.
BOMB = "[&l0 [" + ", ".join(["lol"] * 10) + "], " + ", ".join(
    f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)) + "]"


def refused(values, fragment, origin="my.yaml"):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(values, origin=origin, check_condition=build_encoder)
    message = str(info.value)
    assert message.startswith(origin) and "\n" not in message and len(message) < 600, message
    assert fragment in message, message
    return message


# ---------------------------------------------------------------------------------------------------
# 1. YAML alias bombs, and values too large to print
# ---------------------------------------------------------------------------------------------------


def run_limited(*args, memory=2 * 2**30, timeout=60):
    """`python ARGS` in a child process that may use at most `memory` bytes: a bomb cannot hurt the machine."""
    import os
    import resource
    import subprocess

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          preexec_fn=limit)


@pytest.mark.parametrize("where", ["data:\n  source: {}\n", "conditions:\n  - {{name: sketch, threshold: {}}}\n"])
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, where):
    recipe = write_recipe_text(tmp_path, where.format(BOMB))
    start = time.perf_counter()
    done = run_limited("-m", "condiff", "train", str(recipe), "--set", f"train.output_dir={tmp_path / 'out'}")
    err = done.stderr.strip()
    assert done.returncode == 2 and err.startswith(f"condiff: error: {recipe}") and "\n" not in err, err[-2000:]
    assert time.perf_counter() - start < 30 and len(err) < 300 and "alias" in err, err
    assert not (tmp_path / "out").exists()


def test_a_saved_recipe_never_uses_aliases_so_it_loads_again(tmp_path, loose_plugin):
    from condiff.config import save_recipe

    shared = [1, 2]
    recipe = recipe_from_dict({"conditions": [{"name": "loose", "sizes": shared}, {"name": "loose", "sizes": shared}]})
    save_recipe(recipe, tmp_path / "saved.yaml")
    assert "&" not in (tmp_path / "saved.yaml").read_text()
    assert load_recipe(tmp_path / "saved.yaml") == recipe


def test_anchors_and_aliases_are_refused_in_set_overrides(tmp_path):
    with pytest.raises(RecipeError, match=r"^--set .*alias") as info:
        load_recipe(None, ["data.source=[&a [1, 2], *a, *a]"])
    assert "\n" not in str(info.value)


def test_a_shared_reference_bomb_given_as_a_dict_is_never_expanded():
    """The same bomb built in Python (recipe_from_dict is public API): messages show a short repr."""
    code = """if True:
        import time
        from condiff.conditions import build_encoder  # torch and the encoders: imported before the clock starts
        from condiff.config import recipe_from_dict
        from condiff.errors import RecipeError
        bomb = ["lol"] * 10
        for _ in range(9):
            bomb = [bomb] * 10
        start = time.perf_counter()
        for values in ({"data": {"source": bomb}}, {"conditions": [{"name": "sketch", "threshold": bomb}]},
                       {"conditions": [{"name": "sketch", "dropout": bomb}]}, {"train": {"lol" * 10**6: 1}}):
            try:
                recipe_from_dict(values, origin="my.yaml", check_condition=build_encoder)
            except RecipeError as err:
                print(str(err).replace(chr(10), " "))
        print(round(time.perf_counter() - start))
    """
    done = run_limited("-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    *messages, seconds = done.stdout.strip().splitlines()
    assert int(seconds) < 5 and len(messages) == 4, done.stdout
    for message, fragment in zip(messages, ["data.source = [[[", "conditions[0].threshold = [[[",
                                            "conditions[0].dropout = [[[", "unknown key"], strict=True):
        assert message.startswith("my.yaml: ") and fragment in message and len(message) < 600, message


@pytest.mark.parametrize("values", [
    {"train": {"seed": 10**5000}}, {"train": {"lr": 10**5000}}, {"model": {"channels": [10**5000]}},
    {"train": {10**5000: 1}}, {"conditions": [{"name": "lowres", "factor": 10**5000}]},
])
def test_integers_too_long_to_print_are_refused(values):
    refused(values, "my.yaml: ")


def test_deep_nesting_huge_files_and_special_files_are_refused(tmp_path):
    with pytest.raises(RecipeError, match="nested too deeply"):
        load_recipe(write_recipe_text(tmp_path, "data:\n  source: " + "[" * 5000 + "]" * 5000 + "\n"))
    with pytest.raises(RecipeError, match="too large for a recipe"):
        load_recipe(write_recipe_text(tmp_path, "# padding\n" * 200_000))
    with pytest.raises(RecipeError, match="integer"):
        load_recipe(write_recipe_text(tmp_path, f"train:\n  seed: {'9' * 5000}\n"))
    if Path("/dev/zero").exists():  # an endless file: read in a child process that cannot exhaust the machine
        done = run_limited("-c", "from condiff.config import load_recipe\nload_recipe('/dev/zero')")
        assert "RecipeError: /dev/zero: too large for a recipe" in done.stderr, done.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------
# 2. Values that validation accepted but torch or numpy refuse later
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, fragment", [
    ({"model": {"dropout": 5}}, "model.dropout = 5"),
    ({"train": {"adam_beta1": 2}}, "train.adam_beta1 = 2"),
    ({"train": {"adam_beta2": 1}}, "train.adam_beta2 = 1"),
    ({"train": {"seed": -1}}, "train.seed = -1"),
    ({"train": {"seed": 2**70}}, "train.seed = 1180591620717411303424"),
    ({"data": {"seed": -1}}, "data.seed = -1"),
    ({"train": {"lr": 1e300}}, "train.lr = 1e+300"),
    ({"model": {"attention_head_dim": 10**9}}, "model.attention_head_dim = 1000000000"),
    ({"model": {"attention_head_dim": 256}}, "model.attention_head_dim 256 is wider than model.channels 128"),
    ({"train": {"sample_num": 10**8}}, "train.sample_num = 100000000"),
    ({"train": {"sample_steps": 1000}}, "train.sample_steps 1000"),
    ({"train": {"max_minutes": float("nan")}}, "train.max_minutes = nan must be a finite number"),
    ({"train": {"weight_decay": 1e9}}, "train.weight_decay"),
    ({"data": {"size": 10**12}}, "data.size"),
    ({"train": {"output_dir": ""}}, "train.output_dir is empty"),
    ({"train": {"output_dir": "  "}}, "train.output_dir is empty"),
    ({"train": {"output_dir": "out\0put"}}, "NUL"),
    ({"data": {"source": ""}}, "data.source is empty"),
    ({"train": {"lr": 10**400}}, "train.lr"),
    ({"train": {"lr": "1e999"}}, "finite"),
    ({"conditions": [{"name": "sketch", "max_shift": 1e300}]},
     "sketch max_shift must be from 0 to 32 (pixels at 32 px, the whole image), got 1e+300"),
    ({"conditions": [{"name": "sketch", "thickness_jitter": 1e4}]}, "conditions[0]: bad value for condition 'sketch': "
                                                                    "sketch thickness_jitter must be from 0 to 32"),
    ({"conditions": [{"name": "lowres", "factor": 2000}]}, "lowres factor must be a whole number from 1 to 1024"),
    ({"conditions": [{"name": "canny", "high_threshold": 2041}]}, "high_threshold <= 2040"),
    ({"conditions": [{"name": "lowres", "factor": 10**30}]}, "conditions[0].factor"),
    ({"conditions": [{"name": "canny", "low_threshold": 10**30, "high_threshold": 10**31}]}, "low_threshold"),
])
def test_values_torch_or_numpy_would_refuse_are_recipe_errors(values, fragment):
    refused(values, fragment)


def test_out_of_range_recipe_values_stop_train_before_anything_is_written(tmp_path, capsys, no_work):
    recipe = write_recipe_text(tmp_path, f"train:\n  output_dir: {tmp_path / 'out'}\n")
    for override in ("model.dropout=5", "train.seed=-1", "train.lr=1e300", "train.sample_num=100000000",
                     "train.output_dir=", "data.seed=-1"):
        one_line_error(capsys, ["train", str(recipe), "--set", override], override.partition("=")[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


@pytest.fixture
def loose_plugin(condition_registry):
    """A registered encoder without annotations: only config's generic checks and its own apply."""
    from diffusers.configuration_utils import register_to_config

    from condiff.conditions.base import ConditionEncoder

    registry = condition_registry

    @registry.register_condition("loose")
    class Loose(ConditionEncoder):
        channels = 1

        @register_to_config
        def __init__(self, strength=1.0, sizes=(1, 2)):
            if not 0 <= strength <= 10:
                raise ValueError(f"loose strength must be in [0, 10], got {strength}")

    return Loose


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_encoder_settings_are_refused_for_any_encoder(loose_plugin, value):
    refused({"conditions": [{"name": "loose", "strength": value}]}, "conditions[0].strength")
    refused({"conditions": [{"name": "loose", "sizes": [1, value]}]}, "conditions[0].sizes")


# ---------------------------------------------------------------------------------------------------
# 3. Duplicate keys; type errors as sentences
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, key", [
    ("train:\n  lr: 0.1\n  lr: 0.2\n", "'lr'"),
    ("train:\n  lr: 0.1\ntrain:\n  seed: 2\n", "'train'"),
    ("conditions:\n  - {name: sketch, threshold: 0.1, threshold: 0.2}\n", "'threshold'"),
])
def test_duplicate_keys_are_refused(tmp_path, text, key):
    path = write_recipe_text(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "duplicate key" in message and key in message, message


def test_type_errors_inside_an_encoder_read_as_sentences(loose_plugin):
    message = refused({"conditions": [{"name": "loose", "strength": "strong"}]}, "conditions[0]")
    assert "not supported between" not in message and "wrong type" in message, message


# ---------------------------------------------------------------------------------------------------
# 4 and 5. Numbers on the command line: ranges checked before any work
# ---------------------------------------------------------------------------------------------------


class WorkStarted(Exception):
    """Raised by anything that loads a model, reads an image, builds a dataset or draws a figure."""


@pytest.fixture
def no_work(monkeypatch):
    import condiff.data.sources
    import condiff.device
    import condiff.images
    import condiff.training.from_recipe
    import condiff.visualize

    def refuse(*args, **kwargs):
        raise WorkStarted

    for module, name in ((condiff.device, "pick_device"), (condiff.images, "open_image"),
                         (condiff.data.sources, "build_dataset"), (condiff.visualize, "noise_strip"),
                         (condiff.visualize, "plot_schedules"), (condiff.training.from_recipe, "train_recipe")):
        monkeypatch.setattr(module, name, refuse)


# (command before the option, option, values that must be refused, a value in range)
OPTIONS = [
    (["sample"], "--num", [0, -1, 10**9], 16),
    (["sample"], "--steps", [0, 10**12, 2**70], 20),
    (["sample"], "--seed", [-1, 2**32, 2**64, 2**70], 2**32 - 1),
    (["sample"], "--scale", [0, 2000], 4),
    (["colorize", "in.png"], "--num", [0, 10**9], 1),
    (["colorize", "in.png"], "--steps", [0, 10**9], 8),
    (["colorize", "in.png"], "--seed", [-1, 2**70], 0),
    (["sketch2img", "in.png"], "--seed", [-5, 2**64], 7),
    (["eval", "unconditional"], "--num", [0, 9, 10**9], 10),
    (["eval", "unconditional"], "--steps", [0, 10**9], 20),
    (["eval", "unconditional"], "--seed", [-1, 2**70], 0),
    (["noise", "in.png", "--t=0"], "--num-train-timesteps", [0, 10**9], 100),
    (["noise", "in.png"], "--size", [0, 10**5], 32),
    (["noise", "in.png"], "--seed", [-1, 2**70], 3),
    (["noise", "in.png"], "--t", [-1, 1000, 2**70], 999),  # T = 1000 by default
    (["schedules"], "--num-train-timesteps", [0, 10**9], 1000),
    (["encode", "in.png", "--condition", "sketch"], "--resolution", [0, 10**5], 64),
    (["encode", "in.png", "--condition", "sketch"], "--scale", [0, 2000], 4),
    (["data", "preview", "nouns"], "--num", [0, 10**9], 64),
    (["data", "preview", "nouns"], "--resolution", [0, 10**5], 32),
    (["data", "preview", "nouns"], "--scale", [0, 2000], 4),
    (["data", "preview", "nouns"], "--seed", [-1, 2**70], 0),
    (["data", "export", "nouns"], "--num", [0, 10**9], 5),
    (["data", "export", "nouns"], "--seed", [-1, 2**70], 0),
    (["data", "export", "nouns"], "--resolution", [0, 10**5], 32),
]
FLOAT_OPTIONS = [
    (["colorize", "in.png"], "--guidance"), (["sketch2img", "in.png"], "--guidance"),
    (["eval", "colorize"], "--guidance"),
]


def bad_output(command, tmp_path):
    """An option that fails after the range checks: proves an in-range value passed them, without work."""
    if command[0] == "data" and command[1] == "export":
        (tmp_path / "taken").mkdir(exist_ok=True)
        (tmp_path / "taken" / "x").write_text("")
        return ["--out", str(tmp_path / "taken")], "already exists"
    if command[0] == "eval":
        return ["--json", str(tmp_path / "report.txt")], "must end in .json"
    return ["--out", str(tmp_path / "out.jpg")], "must end in .png"


@pytest.mark.parametrize("command, option, bad, good", OPTIONS, ids=lambda x: x if isinstance(x, str) else None)
def test_numeric_options_out_of_range_are_one_line_errors_before_any_work(tmp_path, capsys, no_work,
                                                                         command, option, bad, good):
    tail, after_checks = bad_output(command, tmp_path)
    before = paths_under(tmp_path)
    for value in bad:
        start = time.perf_counter()
        one_line_error(capsys, [*command, f"{option}={value}", *tail], f"{option} ")
        assert time.perf_counter() - start < 2
    one_line_error(capsys, [*command, f"{option}={good}", *tail], after_checks)
    assert paths_under(tmp_path) == before


@pytest.mark.parametrize("command, option", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "50.5", "1e308"])
def test_guidance_must_be_finite_and_sensible(tmp_path, capsys, no_work, command, option, value):
    tail, _ = bad_output(command, tmp_path)
    one_line_error(capsys, [*command, f"{option}={value}", *tail], "--guidance")
    if command[0] != "eval" and value != "-inf":  # one scale per condition ("-inf" alone would read as an option)
        one_line_error(capsys, [*command, option, "2", value, *tail], "--guidance")
    assert paths_under(tmp_path) == ([Path("taken"), Path("taken/x")] if "taken" in str(tail) else [])


def test_a_gif_of_many_samples_is_refused_before_any_work(tmp_path, capsys, no_work):
    """--out-dir alone samples in batches of 256, but a GIF records every image at once: with --gif, --num
    keeps the one-batch limit (it let 100 000 through into one batch)."""
    argv = ["sample", "--out-dir", str(tmp_path / "many"), "--gif", str(tmp_path / "many.gif")]
    one_line_error(capsys, [*argv, "--num", "257"], "--num 257: must be from 1 to 256")
    assert paths_under(tmp_path) == []


def test_port_out_of_range(capsys):
    for port in (0, -1, 65536, 2**70):
        one_line_error(capsys, ["app", f"--port={port}"], f"--port {port}")


# Hypothesis over every numeric option: the answer is exit 2 with one line either way; the line names the
# option exactly when the value is outside its documented range.
RANGE_OF = {("sample", "--num"): (1, 256), ("sample", "--steps"): (1, 100_000), ("sample", "--seed"): (0, 2**32 - 1),
            ("sample", "--scale"): (1, 16), ("colorize", "--num"): (1, 256), ("colorize", "--steps"): (1, 100_000),
            ("colorize", "--seed"): (0, 2**32 - 1), ("sketch2img", "--seed"): (0, 2**32 - 1),
            ("eval", "--num"): (10, 10_000), ("eval", "--steps"): (1, 100_000), ("eval", "--seed"): (0, 2**32 - 1),
            ("noise", "--num-train-timesteps"): (1, 100_000), ("noise", "--size"): (1, 512),
            ("noise", "--seed"): (0, 2**32 - 1), ("noise", "--t"): (0, 999),
            ("schedules", "--num-train-timesteps"): (1, 100_000), ("encode", "--resolution"): (1, 1024),
            ("encode", "--scale"): (1, 16), ("data", "--num"): (1, 1024), ("data", "--resolution"): (1, 1024),
            ("data", "--scale"): (1, 16), ("data", "--seed"): (0, 2**32 - 1)}
NUMBERS = st.one_of(st.integers(), st.integers(min_value=-3, max_value=2000),
                    st.sampled_from([2**31, 2**32 - 1, 2**32, 2**63, 2**64, 10**30, -(2**63)]))


def test_every_numeric_option_is_checked_against_its_range(tmp_path_factory, no_work):
    import contextlib
    import io

    preview = [c for c in OPTIONS if c[0][:2] != ["data", "export"]]  # export's limits are covered above

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(case=st.sampled_from(preview), value=NUMBERS)
    @example(case=preview[0], value=256)
    def check(case, value):
        command, option, _, _ = case
        folder = tmp_path_factory.mktemp("cli")
        tail, after_checks = bad_output(command, folder)
        low, high = RANGE_OF[(command[0], option)]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([*command, f"{option}={value}", *tail])
        lines = err.getvalue().strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("condiff: error:"), lines
        if not low <= value <= high:
            assert f"{option} " in lines[0], lines
        else:  # in range: past the checks, or refused for the size of the picture it would make
            assert after_checks in lines[0] or (command[0] in ("data", "encode") and " px" in lines[0]), lines
        assert paths_under(folder) == ([Path("taken"), Path("taken/x")] if "taken" in str(tail) else [])

    check()


# ---------------------------------------------------------------------------------------------------
# 6. Plugins: whatever an entry point does, condiff warns on stderr and goes on
# ---------------------------------------------------------------------------------------------------

PLUGINS = {
    "not_a_class": ("bad_plugins.funcs:make_encoder", "is not a class"),
    "not_an_encoder": ("bad_plugins.funcs:Unrelated", "not a ConditionEncoder"),
    "exits": ("bad_plugins.exits:Encoder", "sys.exit(3)"),
    "raises": ("bad_plugins.raises:Encoder", "RuntimeError: broken on purpose"),
    "missing": ("bad_plugins.nowhere:Encoder", "ModuleNotFoundError"),
    "sketch": ("bad_plugins.funcs:Impostor", "already registered"),
}


@pytest.fixture
def bad_plugins(tmp_path, monkeypatch):
    from condiff.conditions import registry

    site = tmp_path / "site"
    package = site / "bad_plugins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "funcs.py").write_text(
        "from condiff.conditions.base import ConditionEncoder\n\n\ndef make_encoder():\n    return None\n\n\n"
        "class Unrelated:\n    pass\n\n\nclass Impostor(ConditionEncoder):\n    channels = 1\n\n\n"
        "class Good(ConditionEncoder):\n    channels = 2\n")
    (package / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (package / "raises.py").write_text("raise RuntimeError('broken on purpose')\n")
    dist = site / "bad_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-plugins\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, (target, _) in PLUGINS.items()) + "good = bad_plugins.funcs:Good\n"
    (dist / "entry_points.txt").write_text("[condiff.conditions]\n" + lines)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_FAILED", {})
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    yield
    for name in [m for m in sys.modules if m.startswith("bad_plugins")]:
        del sys.modules[name]


def test_broken_plugins_become_warnings_on_stderr(bad_plugins, capsys):
    assert main(["conditions", "list"]) == 0
    out, err = capsys.readouterr()
    assert "sketch" in out and "grayscale" in out and "warning" not in out
    assert "good         2 channel(s)  bad_plugins.funcs.Good" in out  # a working plugin beside the broken ones
    warnings = err.strip().splitlines()
    assert len(warnings) == len(PLUGINS), err
    for name, (target, reason) in PLUGINS.items():  # the line names the entry point and its package
        line = next(line for line in warnings if f"'{name}'" in line)
        assert line.startswith("condiff: warning:") and f"{target} from bad-plugins 0.1" in line, line
        assert reason in line, line
    from condiff.conditions.registry import get_condition

    assert get_condition("sketch").__module__ == "condiff.conditions.sketch"


def test_a_recipe_naming_a_broken_plugin_says_why_it_is_unknown(bad_plugins, capsys, tmp_path):
    recipe = write_recipe_text(tmp_path, "conditions:\n  - name: exits\n")
    assert main(["train", str(recipe)]) == 2
    out, err = capsys.readouterr()
    *warnings, error = err.strip().splitlines()
    assert all(line.startswith("condiff: warning:") for line in warnings) and "warning" not in out
    assert error.startswith(f"condiff: error: {recipe}: conditions[0]: unknown condition 'exits'"), error
    assert "sys.exit(3)" in error, error


# ---------------------------------------------------------------------------------------------------
# The range table itself
# ---------------------------------------------------------------------------------------------------


def test_every_numeric_recipe_key_has_a_range():
    import dataclasses
    import typing

    from condiff.config import RANGES, Recipe

    for section in ("data", "model", "scheduler", "train"):
        config = getattr(Recipe(), section)
        for field in dataclasses.fields(config):
            hint = typing.get_type_hints(type(config))[field.name]
            if {int, float} & set(typing.get_args(hint) or (hint,)):  # int, float, optional or list of them
                key = f"{section}.{field.name}"
                assert key in RANGES, key
                value = getattr(config, field.name)
                for item in value if isinstance(value, list) else [value]:
                    assert item is None or item in RANGES[key], (key, item)  # the defaults are in range
    assert "conditions.dropout" in RANGES
    assert all(math.isfinite(r.low) and math.isfinite(r.high) for r in RANGES.values())
