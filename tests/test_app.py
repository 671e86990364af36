"""`condiff app` end to end: the real page in headless Chromium (Debian's, driven by Playwright).

The app runs as a subprocess on a free port with tiny random models (the UI is tested, not the
pictures), or with the shipped models when all three are installed, or with the folders listed in
CONDIFF_APP_TEST_MODELS (separated by os.pathsep); a tiny random model on two conditions (canny +
lowres) is always added for the Any-model tab. Screenshots go to a temporary folder, so the suite never
changes tracked files; scripts/make_docs_images.sh sets CONDIFF_APP_SCREENSHOTS=docs/images to write
the Generate, Colorize and Sketch tabs' screenshots of real models for docs/app.md.
"""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from condiff.cli.main import main
from tests.conftest import run_condiff_subprocess, save_untrained_models

ROOT = Path(__file__).parents[1]
CHROMIUM = Path("/usr/bin/chromium")
GRAY_INPUT = ROOT / "docs" / "images" / "input-gray-noun.png"
PHOTO_INPUT = ROOT / "docs" / "images" / "input-photo.jpg"
STARTUP_TIMEOUT = 60


# ---------------------------------------------------------------------------------------------------
# The command without a browser
# ---------------------------------------------------------------------------------------------------


def test_app_help_imports_neither_torch_nor_gradio():
    done = run_condiff_subprocess("app", "--help", timeout=120)
    assert done.returncode == 0 and "usage: condiff app" in done.stdout and "--model" in done.stdout
    code = ("import sys; from condiff.cli.main import build_parser; build_parser().parse_args(['app']); "
            "print('torch' in sys.modules, 'gradio' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.split() == [
        "False", "False"]


def test_missing_gradio_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    assert main(["app"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("condiff: error:") and 'pip install "condiff[app]"' in err


def test_app_without_models_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("gradio", reason='the app extra is not installed (pip install "condiff[app]")')
    for argv, fragment in ((["app", "--no-shipped"], "no models: no --model was given"),
                           (["app", "--model", str(tmp_path / "nowhere")], "nowhere: no such model folder")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("condiff: error:") and fragment in err, err


ANY_MODEL = "canny-lowres"  # the tiny two-condition model's folder, and its label in the app


def make_tab_models(folder: Path) -> dict[str, Path]:
    """A random tiny UNet per tab, saved as `condiff train` saves models: enough to drive the page. The
    Any-model tab's has two conditions that no other tab takes, one of them on 3 channels."""
    from condiff.config import ModelConfig, SchedulerConfig

    install_docs_plugin(folder / "site")
    tabs = {"generate": ("unconditional", []), "colorize": ("grayscale", ["grayscale"]),
            "sketch": ("sketch", ["sketch"]), "any": (ANY_MODEL, ["canny", "lowres"]),
            "plugin": ("blur-model", ["blur"])}
    saved = save_untrained_models(
        folder, {name: [{"name": condition} for condition in conditions] for name, conditions in tabs.values()},
        ModelConfig(channels=[32, 32], attention=[False, False], layers_per_block=1), SchedulerConfig())
    return {tab: saved[name] for tab, (name, _) in tabs.items()}


def install_docs_plugin(site: Path) -> None:
    """docs/plugins.md's `blur` condition as an installed distribution with its entry point, on `site`
    (the app's PYTHONPATH); this process registers it by importing it."""
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), re.S).group(1)
    (site / "my_blur").mkdir(parents=True, exist_ok=True)
    (site / "my_blur" / "__init__.py").write_text("")
    (site / "my_blur" / "condition.py").write_text(code)
    dist = site / "my_blur-0.1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-blur\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[condiff.conditions]\nblur = my_blur.condition:BlurCondition\n")
    (dist / "top_level.txt").write_text("my_blur\n")
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    from condiff.conditions.registry import list_conditions

    if "blur" not in list_conditions():
        import my_blur.condition  # noqa: F401  (registers blur)


@pytest.fixture(scope="module")
def tab_models(tmp_path_factory):
    return make_tab_models(tmp_path_factory.mktemp("app-models"))


def test_models_go_to_their_tabs_and_missing_ones_are_explained(tab_models, tmp_path):
    from condiff.app.models import TABS, find_models

    folders = [str(tab_models[key]) for key in ("generate", "sketch", "any")]
    catalog = find_models(folders, shipped=False)
    tabs = {tab.app.key: [model.label for model in catalog.for_tab(tab)] for tab in TABS}
    assert tabs == {"generate": [folders[0]], "colorize": [], "sketch": [folders[1]], "any": folders[1:]}
    assert list(catalog.notes) == ["colorize"] and "'grayscale' condition" in catalog.notes["colorize"]
    assert catalog.by_label(folders[2]).conditions == ("canny", "lowres")
    only_unconditional = find_models(folders[:1], shipped=False)
    assert sorted(only_unconditional.notes) == ["any", "colorize", "sketch"]
    assert "none of the models given is conditional" in only_unconditional.notes["any"]
    with pytest.raises(Exception, match="no such model folder"):
        find_models([str(tmp_path / "nowhere")], shipped=False)

    pytest.importorskip("gradio", reason='the app extra is not installed (pip install "condiff[app]")')
    from condiff.app.ui import model_listing

    listing = model_listing(catalog).splitlines()
    assert listing[2].endswith("→ Sketch, Any model") and listing[3].endswith("(conditions: canny, lowres) → Any model")


def test_the_any_model_button_runs_the_generate_task(tab_models, tmp_path):
    """What the Any-model tab's Generate does, without a browser: `condiff generate`'s library call."""
    pytest.importorskip("gradio", reason='the app extra is not installed (pip install "condiff[app]")')
    import gradio as gr
    from PIL import ImageDraw

    from condiff.app.models import TABS, find_models, with_sampler
    from condiff.app.ui import generate_any, user_errors
    from condiff.tasks import GENERATE

    tab = next(tab for tab in TABS if tab.app.key == "any")
    catalog = find_models([str(tab_models["any"]), str(tab_models["sketch"])], shipped=False)
    label = str(tab_models["any"])
    output = generate_any(catalog, tab, label, [str(GRAY_INPUT), str(PHOTO_INPUT)], [1.0, 2.0], 3, "ddim", 5)
    assert output.size == (32, 32)
    pipeline = with_sampler(catalog.by_label(label), "ddim", 3)
    inputs = {"canny": Image.open(GRAY_INPUT), "lowres": Image.open(PHOTO_INPUT)}
    expected = GENERATE.run(pipeline, inputs, 1, 3, 5, guidance=[1.0, 2.0]).images[0]
    assert output.tobytes() == expected.tobytes()

    def message(*arguments) -> str:  # as the button calls it: a user mistake is a one-line message in the page
        with pytest.raises(gr.Error) as raised:
            user_errors(generate_any)(catalog, tab, *arguments, 2, "ddim", 0)
        assert "\n" not in raised.value.message
        return raised.value.message

    with pytest.raises(gr.Error, match="palette 'banana': choose one of auto, off, snap, project"):
        user_errors(generate_any)(catalog, tab, label, [str(GRAY_INPUT), str(PHOTO_INPUT)], [1, 1], 2, "ddim", 0,
                                  "banana")
    assert message(label, [str(GRAY_INPUT), None], [1, 1]) == (
        "no image for the lowres condition: upload one (this model takes one image per condition: canny, lowres)")
    not_image = tmp_path / "notes.png"
    not_image.write_text("these are notes, not an image\n")
    assert message(label, [str(not_image), str(PHOTO_INPUT)], [1, 1]).startswith(
        "notes.png: not an image Pillow can read")
    canvas = Image.new("RGBA", (64, 64), "white")
    assert message(str(tab_models["sketch"]), [{"composite": canvas}], [1]) == (
        "the sketch canvas is empty: draw something first")
    ImageDraw.Draw(canvas).rectangle((16, 16, 48, 48), outline="black", width=3)
    assert generate_any(catalog, tab, str(tab_models["sketch"]), [{"composite": canvas}], [1], 2, "ddim", 0).size == (
        32, 32)


# ---------------------------------------------------------------------------------------------------
# The page in a browser
# ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def model_folders(tab_models) -> tuple[list[Path], bool]:
    """(the model folders the app gets, whether they are real models worth a screenshot in the docs)."""
    from condiff.tasks import TASKS, installed_models

    listed = os.environ.get("CONDIFF_APP_TEST_MODELS")
    if listed:
        return [Path(folder) for folder in listed.split(os.pathsep)], True
    if set(installed_models()) == set(TASKS):
        return list(installed_models().values()), True
    return list(tab_models.values()), False


def conditions_of(folder: Path) -> list[str]:
    stack = folder / "conditions" / "config.json"
    conditions = json.loads(stack.read_text(encoding="utf-8"))["conditions"] if stack.exists() else []
    return [condition["name"] for condition in conditions]


def model_sizes(folders: list[Path]) -> set[tuple[int, int]]:
    sizes = set()
    for folder in folders:
        size = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))["sample_size"]
        sizes.add((size, size))
    return sizes


@pytest.fixture(scope="module")
def app_server(tab_models, tmp_path_factory):
    pytest.importorskip("gradio", reason='the app extra is not installed (pip install "condiff[app]")')
    folders, real = model_folders(tab_models)
    folders = [folder for folder in folders if folder not in (tab_models["any"], tab_models["plugin"])]
    # The Any-model tab's tiny model, given relative to the app's folder as a user would: labelled "canny-lowres".
    arguments = ["--no-shipped", *[arg for folder in folders for arg in ("--model", str(folder))], "--model", ANY_MODEL,
                 "--model", str(tab_models["plugin"])]  # trained on docs/plugins.md's plugin, installed below
    port = free_port()
    log_path = tmp_path_factory.mktemp("app-log") / "app.log"
    site = tab_models["plugin"].parent / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")]),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "condiff", "app", *arguments, "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tab_models["any"].parent)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"condiff app did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, [*folders, tab_models["any"], tab_models["plugin"]], real, log_path
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the app stops cleanly and removes its temporary files
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason='playwright is not installed (pip install "condiff[app]")')
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def fetch_image(page, selector: str, timeout: float = 60_000) -> tuple[bytes, Image.Image]:
    """The file behind an output image of the page, as the browser downloads it."""
    image = page.locator(f"{selector} img")
    image.wait_for(timeout=timeout)
    source = image.get_attribute("src")
    data = page.request.get(source if source.startswith("http") else page.url.rstrip("/") + source).body()
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    return data, decoded


def rectangle(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


# A Noun, as docs/images/input-drawing.png: head, lenses, bridge, body (points in canvas fractions)
NOUN = [rectangle(0.27, 0.18, 0.74, 0.59), rectangle(0.20, 0.33, 0.45, 0.47), rectangle(0.53, 0.33, 0.78, 0.47),
        [(0.45, 0.39), (0.53, 0.39)], [(0.35, 0.97), (0.35, 0.59), (0.66, 0.59), (0.66, 0.97)]]


def draw(page, selector: str, strokes=NOUN) -> None:
    """Strokes drawn with the mouse, one move per straight segment: the editor draws the line between
    two points itself, and each move costs about half a second in headless Chromium on a busy machine."""
    from condiff.app.ui import CANVAS

    canvas = page.locator(f"{selector} canvas").first
    canvas.wait_for()
    brush = page.locator(f'{selector} button[aria-label="Brush"]')  # the app chooses the brush itself
    page.wait_for_function("b => b.classList.contains('highlight')", arg=brush.element_handle(), timeout=10_000)
    # The drawing area is the app's CANVAS pixels at the editor's zoom, centred in the <canvas> element.
    zoom = page.locator(selector).get_by_text(re.compile(r"^\s*\d+%\s*$")).first.inner_text()
    side = CANVAS * int(zoom.strip().rstrip("%")) / 100
    box = canvas.bounding_box()
    left, top = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
    for points in strokes:
        page.mouse.move(left + points[0][0] * side, top + points[0][1] * side)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(left + x * side, top + y * side)
        page.mouse.up()


def screenshot(page, real: bool, tmp_path: Path, name: str) -> None:
    wanted = os.environ.get("CONDIFF_APP_SCREENSHOTS")
    folder = Path(wanted) if real and wanted else tmp_path
    path = folder / f"app-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert Image.open(path).size[0] > 0


def app_tracebacks(log_path: Path) -> list[str]:
    """The tracebacks in the app's log, but for a browser that left before an upload ended
    (starlette.requests.ClientDisconnect, which gradio's upload route logs on a loaded machine): that is
    the client's doing, not an error of the app."""
    blocks = log_path.read_text().split("Traceback (most recent call last):")[1:]
    return [block for block in blocks if "starlette.requests.ClientDisconnect" not in block.split("ERROR:")[0]]


def open_app(browser, url: str):
    """(page, the page's JavaScript errors), once the model listing is shown."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url)
    page.locator("#model-listing").wait_for()
    return page, errors


@pytest.mark.slow
def test_app_in_a_browser(app_server, browser, tmp_path):
    url, folders, real, log_path = app_server
    sizes = model_sizes(folders)
    page, errors = open_app(browser, url)
    listing = page.locator("#model-listing")
    assert "Generate" in listing.inner_text() and "Sketch" in listing.inner_text()

    # Generate: a grid and the denoising GIF
    page.locator("#generate-run").click()
    data, grid = fetch_image(page, "#generate-grid")
    assert data.startswith(b"\x89PNG") and grid.width > 32
    gif, animation = fetch_image(page, "#generate-gif")
    assert gif.startswith(b"GIF8") and animation.n_frames > 1
    screenshot(page, real, tmp_path, "generate")

    # Sketch: strokes drawn with the mouse, then Generate
    page.get_by_role("tab", name="Sketch").click()
    draw(page, "#sketch-canvas")
    page.locator("#sketch-run").click()
    data, output = fetch_image(page, "#sketch-output")
    assert data.startswith(b"\x89PNG") and output.size in sizes
    screenshot(page, real, tmp_path, "sketch")
    page.locator("#sketch-clear").click()
    page.locator("#sketch-output img").wait_for(state="detached")
    page.locator("#sketch-run").click()
    page.get_by_text("the canvas is empty: draw something first").first.wait_for()

    # Colorize: an uploaded photograph, also at full resolution (on a fresh page: no message left over)
    page.reload()
    page.get_by_role("tab", name="Colorize").click()
    page.locator("#colorize-input input[type=file]").set_input_files(str(PHOTO_INPUT))
    page.locator("#colorize-preview img").wait_for()
    page.get_by_label("Also at the input's full resolution").check()
    page.locator("#colorize-run").click()
    data, output = fetch_image(page, "#colorize-output")
    assert data.startswith(b"\x89PNG") and output.size in sizes
    _, full = fetch_image(page, "#colorize-fullres")
    assert full.size == Image.open(PHOTO_INPUT).size
    screenshot(page, real, tmp_path, "colorize")

    # Bad uploads: a message in the page, and the app goes on serving
    not_image = tmp_path / "notes.png"
    not_image.write_text("these are notes, not an image\n")
    huge = tmp_path / "huge.png"
    Image.new("L", (5000, 4000)).save(huge)  # 20 MP in a few kB: over the app's pixel limit
    heavy = tmp_path / "heavy.png"
    with open(heavy, "wb") as file:
        file.truncate(21 * 1024 * 1024)  # over the app's upload size limit (sparse: nothing is written)
    for upload, message in ((not_image, "notes.png: not an image Pillow can read"),
                            (huge, "huge.png: image is 5000x4000"),
                            (heavy, "exceed the maximum allowed size")):
        page.reload()
        page.get_by_role("tab", name="Colorize").click()
        page.locator("#colorize-input input[type=file]").set_input_files(str(upload))
        page.get_by_text(message).first.wait_for(timeout=20_000)
    page.reload()
    page.get_by_role("tab", name="Colorize").click()
    page.locator("#colorize-input input[type=file]").set_input_files(str(GRAY_INPUT))
    page.locator("#colorize-run").click()
    assert fetch_image(page, "#colorize-output")[1].size in sizes
    assert not errors, errors
    assert app_tracebacks(log_path) == []
    page.close()


def choose(page, selector: str, option: str) -> None:
    """Pick `option` in a Gradio dropdown."""
    page.locator(f"{selector} input").click()
    page.get_by_role("option", name=option, exact=True).click()


@pytest.mark.slow
def test_any_model_tab_in_a_browser(app_server, browser, tmp_path):
    url, folders, real, log_path = app_server
    page, errors = open_app(browser, url)
    listing = page.locator("#model-listing")
    lines = [line for line in listing.inner_text().splitlines() if "→" in line]
    assert f"{ANY_MODEL} (conditions: canny, lowres) → Any model" in lines
    assert all(line.endswith("Any model") == ("conditions:" in line) for line in lines), lines

    page.get_by_role("tab", name="Any model").click()
    choose(page, "#any-model", ANY_MODEL)
    for condition, channels, image in (("canny", 1, GRAY_INPUT), ("lowres", 3, PHOTO_INPUT)):
        field = page.locator(f'#tab-any [id$="-input-{condition}"]')
        assert field.inner_text().startswith(f"{condition} ({channels} channel")
        field.locator("input[type=file]").set_input_files(str(image))
        field.locator(f'[data-testid="download-link"][download="{image.name}"]').wait_for()  # uploaded
        if condition == "canny":  # one input left out: a one-line message, and the page goes on
            page.locator("#any-run").click()
            page.get_by_text("no image for the lowres condition: upload one").first.wait_for(timeout=20_000)
    page.locator('#tab-any [id$="-guidance-lowres"] input[type=number]').fill("2")
    page.locator("#any-run").click()
    data, output = fetch_image(page, "#any-output")
    assert data.startswith(b"\x89PNG") and output.size == (32, 32)
    screenshot(page, False, tmp_path, "any")  # never into docs/images: a random model's output

    # A model trained on a third-party plugin (docs/plugins.md's blur, installed as a package) runs too
    plugin_model = next(folder for folder in folders if conditions_of(folder) == ["blur"])
    choose(page, "#any-model", str(plugin_model))
    field = page.locator('#tab-any [id$="-input-blur"]')
    assert field.inner_text().startswith("blur (3 channel")
    field.locator("input[type=file]").set_input_files(str(PHOTO_INPUT))
    field.locator(f'[data-testid="download-link"][download="{PHOTO_INPUT.name}"]').wait_for()
    page.locator("#any-run").click()
    assert fetch_image(page, "#any-output")[1].size == (32, 32)

    # A model with the sketch condition gets a canvas, its brush chosen when the model is
    sketch_model = next((folder for folder in folders if conditions_of(folder) == ["sketch"]), None)
    if sketch_model:  # always, unless CONDIFF_APP_TEST_MODELS lists none
        choose(page, "#any-model", str(sketch_model))
        page.locator("#any-output img").wait_for(state="detached")  # the other model's output is gone
        canvas = '#tab-any [id$="-input-sketch"]'
        page.locator(canvas).get_by_text(re.compile(r"sketch \(\d channels?\): draw here")).first.wait_for()
        draw(page, canvas, [[(0.3, 0.3), (0.7, 0.7)]])
        page.locator("#any-run").click()
        assert fetch_image(page, "#any-output")[1].size in model_sizes([sketch_model])
    assert not errors, errors
    assert app_tracebacks(log_path) == []
    page.close()


@pytest.mark.parametrize("steps,seed,num,named", [(float("nan"), 0, 1, "steps"), (2, -1, 1, "seed"),
                                                  (2, 2**70, 1, "seed"), (2, 0, 10**9, "number of images"),
                                                  (2.5, 0, 1, "steps"), ("x", 0, 1, "steps")])
def test_request_numbers_are_checked_on_the_server(steps, seed, num, named):
    from condiff.app.models import request_numbers
    from condiff.errors import CondiffError

    with pytest.raises(CondiffError, match=f"^{named} .*: give a whole number"):
        request_numbers(steps, seed, num)
    assert request_numbers(20.0, None, 4) == (20, 0, 4)


def test_sigterm_leaves_no_app_files_behind(tab_models, tmp_path):
    pytest.importorskip("gradio", reason='the app extra is not installed (pip install "condiff[app]")')
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    process = subprocess.Popen([sys.executable, "-m", "condiff", "app", "--no-shipped", "--model",
                                str(tab_models["generate"]), "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not answers(f"http://127.0.0.1:{port}/") and time.monotonic() < deadline:
            assert process.poll() is None
            time.sleep(0.5)
        assert list(tmp_path.glob("condiff-app-*")), "the app keeps its files in its own folder"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert list(tmp_path.glob("condiff-app-*")) == []
