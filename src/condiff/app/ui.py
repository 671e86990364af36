"""The page: a model list on top and one tab per task (Generate, Colorize, Sketch, Any model).

Every user mistake (an unreadable or over-large upload, an empty canvas, a condition without an input)
becomes a `gr.Error` with the one-line message the CLI would print; the app keeps serving. All model
runs share one queue slot, so two browser tabs never run a model at the same time.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from condiff.app.models import (
    MAX_FILE_SIZE,
    MAX_IMAGES,
    MAX_UPLOAD_PIXELS,
    TABS,
    AppModel,
    Catalog,
    apply_condition,
    generate_grid,
    open_upload,
)
from condiff.errors import CondiffError
from condiff.sampling import DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, SAMPLERS
from condiff.steering.palette import DEFAULT_PALETTE_MODE, PALETTE_MODES
from condiff.tasks import Task

CANVAS = 256  # pixels of the drawing canvas; the sketch condition shrinks it to the model's size
VIEW = 256  # pixels: the height of image views; small images are enlarged, pixel-sharp
CSS = """
.pixelated img { image-rendering: pixelated; object-fit: contain; width: 100%; height: 100%; }
"""
CANVAS_CLASS = "condiff-canvas"  # every drawing canvas of the page


def pick_brush(selector: str) -> str:
    """JavaScript choosing the brush of every canvas under `selector`: the editor starts with no tool
    chosen ("select the draw tool to start"), so the app chooses for the user."""
    return """() => {
  let tries = 0;
  const pick = () => {
    const brushes = document.querySelectorAll('SELECTOR button[aria-label="Brush"]');
    if (!brushes.length) { if (++tries < 50) setTimeout(pick, 100); return; }
    brushes.forEach(brush => { if (!brush.classList.contains('highlight')) brush.click(); });
  };
  pick();
}""".replace("SELECTOR", selector)


# By tab key: a "canvas" tab has one canvas, a "conditions" tab one per drawn condition of each model.
PICK_BRUSH = {tab.app.key: pick_brush(f"#{tab.app.key}-canvas" if tab.app.form == "canvas"
                                      else f"#tab-{tab.app.key} .{CANVAS_CLASS}")
              for tab in TABS if tab.app.form in ("canvas", "conditions")}
RUN = {"concurrency_id": "model", "concurrency_limit": 1}  # one model run at a time, in any tab
KEEP_FILES = 3600  # seconds that result files are kept on disk for the page to fetch
CLEAN_EVERY = 300  # seconds between sweeps of Gradio's cache for files older than KEEP_FILES


def user_errors(function):
    """Show a `CondiffError` in the page as an error message instead of a generic 'Error'."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except CondiffError as err:
            raise gr.Error(str(err), print_exception=False) from None

    return wrapper


def model_listing(catalog: Catalog) -> str:
    lines = ["**Models found**"]
    for model in catalog.models:
        tabs = [tab.app.title for tab in TABS if tab.accepts(model.conditions)] or ["no tab of this app"]
        about = [f"conditions: {', '.join(model.conditions)}" if model.conditions else "unconditional"]
        if model.label != str(model.path):
            about.append(f"folder `{model.path}`")
        lines.append(f"- `{model.label}` ({'; '.join(about)}) → {', '.join(tabs)}")
    if not catalog.models:
        lines.append("- none: start the app with `condiff app --model DIR` (a folder written by `condiff train`)")
    return "\n".join(lines)


def model_choice(catalog: Catalog, tab: Task) -> gr.Dropdown:
    labels = [model.label for model in catalog.for_tab(tab)]
    return gr.Dropdown(labels, value=labels[0], label="Model", elem_id=f"{tab.app.key}-model")


def guidance_slider(label: str = "Guidance scale (1 = none)", elem_id: str | None = None) -> gr.Slider:
    return gr.Slider(0, 5, value=1.0, step=0.1, label=label, elem_id=elem_id)


def output_image(label: str, elem_id: str, height: int = VIEW, visible: bool = True) -> gr.Image:
    """An output of the page: PIL images go to the browser as PNG, and small ones are enlarged pixel-sharp."""
    return gr.Image(label=label, type="pil", format="png", height=height, interactive=False, visible=visible,
                    elem_id=elem_id, elem_classes="pixelated")


def sketch_brush(size: int) -> gr.Brush:
    return gr.Brush(default_size=int(size), colors=["#000000"], color_mode="fixed")


def drawing_canvas(label: str, elem_id: str) -> gr.Sketchpad:
    return gr.Sketchpad(label=label, type="pil", image_mode="RGBA", canvas_size=(CANVAS, CANVAS), fixed_canvas=True,
                        brush=sketch_brush(4), layers=False, transforms=(), elem_id=elem_id,
                        elem_classes=CANVAS_CLASS)


def drawn_image(drawing, what: str = "the canvas"):
    """What was drawn on a canvas (its editor value), or a `CondiffError` when nothing was."""
    from condiff.conditions.sketch import drawing_to_gray, stroke_mask

    image = drawing.get("composite") if drawing else None
    if image is None or not stroke_mask(drawing_to_gray(image)).any():  # what the sketch condition sees
        raise CondiffError(f"{what} is empty: draw something first")
    return image


def sampling_options(tab: Task) -> tuple[gr.Slider, gr.Radio, gr.Number, gr.Radio]:
    steps = gr.Slider(1, 200, value=DEFAULT_SAMPLER_STEPS, step=1, label="Denoising steps",
                      elem_id=f"{tab.app.key}-steps")
    scheduler = gr.Radio(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Scheduler (dpm = DPM-Solver++)",
                         elem_id=f"{tab.app.key}-scheduler")
    seed = gr.Number(0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed", elem_id=f"{tab.app.key}-seed")
    palette = gr.Radio(list(PALETTE_MODES), value="auto", elem_id=f"{tab.app.key}-palette",
                       label=f"Palette (auto = {DEFAULT_PALETTE_MODE} when the model has one; "
                             "off = the model's own colours)")
    return steps, scheduler, seed, palette


def sampling_and_button(tab: Task) -> tuple[gr.Slider, gr.Radio, gr.Number, gr.Radio, gr.Button]:
    """The sampling options, folded away, and the run button: the end of every conditional tab's inputs."""
    with gr.Accordion("Sampling", open=False):
        options = sampling_options(tab)
    return *options, gr.Button(tab.app.button, variant="primary", elem_id=f"{tab.app.key}-run")


# ---------------------------------------------------------------------------------------------------
# Tabs
# ---------------------------------------------------------------------------------------------------


def samples_tab(catalog: Catalog, tab: Task, gif_folder: Path) -> None:
    """A grid of samples from nothing, and its denoising animation."""
    with gr.Row():
        with gr.Column(scale=1):
            model = model_choice(catalog, tab)
            steps, scheduler, seed, palette = sampling_options(tab)
            num = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Number of images")
            button = gr.Button(tab.app.button, variant="primary", elem_id=f"{tab.app.key}-run")
        with gr.Column(scale=2):
            grid = output_image("Samples", f"{tab.app.key}-grid", height=VIEW + 64)
            gif = output_image("Denoising (x_t beside the predicted x_0)", f"{tab.app.key}-gif", height=VIEW + 64)

    @user_errors
    def run(label, steps, scheduler, seed, num, palette):
        from condiff.visualize import save_gif

        image, frames = generate_grid(catalog.by_label(label), steps, seed, num, scheduler,
                                      steering={"palette": palette})
        for old in gif_folder.glob("*.gif"):
            if time.time() - old.stat().st_mtime > KEEP_FILES:
                old.unlink(missing_ok=True)
        path = gif_folder / f"denoise-{uuid.uuid4().hex[:12]}.gif"
        save_gif(frames, path)
        return image, str(path)

    button.click(run, [model, steps, scheduler, seed, num, palette], [grid, gif], **RUN)


def upload_tab(catalog: Catalog, tab: Task) -> None:
    """An uploaded image in, the task's output out (and at the input's size, where the task offers it)."""
    app = tab.app
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label=f"{app.input_label} (any size up to {MAX_UPLOAD_PIXELS // 1_000_000} MP)",
                             file_types=["image"], type="filepath", elem_id=f"{app.key}-input")
            preview = gr.Image(label="Input", type="pil", interactive=False, height=VIEW, elem_id=f"{app.key}-preview",
                               elem_classes="pixelated")
            model = model_choice(catalog, tab)
            guidance = guidance_slider()
            full_res = gr.Checkbox(label=app.full_res_label, visible=bool(app.full_res_label))
            steps, scheduler, seed, palette, button = sampling_and_button(tab)
        with gr.Column(scale=1):
            result = output_image(f"{app.output} (the model's resolution)", f"{app.key}-output")
            full = output_image(f"{app.output}, full resolution", f"{app.key}-fullres", visible=False)

    @user_errors
    def show(path):
        from condiff.images import to_rgb

        if path is None:
            return None
        image = to_rgb(open_upload(path))
        image.thumbnail((VIEW, VIEW))
        return image

    @user_errors
    def run(path, label, guidance, full_res, steps, scheduler, seed, palette):
        if path is None:
            raise CondiffError("no image yet: upload one first")
        output, big = apply_condition(catalog.by_label(label), tab, open_upload(path), steps, scheduler,
                                      float(guidance), seed, full_res=full_res, steering={"palette": palette})
        return output, gr.Image(value=big, visible=big is not None)

    upload.change(show, upload, preview)
    button.click(run, [upload, model, guidance, full_res, steps, scheduler, seed, palette], [result, full], **RUN)


def canvas_tab(catalog: Catalog, tab: Task) -> None:
    """A drawing in, the task's output out."""
    with gr.Row():
        with gr.Column(scale=1):
            canvas = drawing_canvas("Draw here (black on white)", f"{tab.app.key}-canvas")
            with gr.Row():
                size = gr.Slider(1, 20, value=4, step=1, label="Brush size", elem_id=f"{tab.app.key}-brush")
                clear = gr.Button("Clear", elem_id=f"{tab.app.key}-clear")
        with gr.Column(scale=1):
            model = model_choice(catalog, tab)
            guidance = guidance_slider()
            steps, scheduler, seed, palette, button = sampling_and_button(tab)
            result = output_image(f"{tab.app.output} (the model's resolution)", f"{tab.app.key}-output")

    @user_errors
    def run(drawing, label, guidance, steps, scheduler, seed, palette):
        output, _ = apply_condition(catalog.by_label(label), tab, drawn_image(drawing), steps, scheduler,
                                    float(guidance), seed, steering={"palette": palette})
        return output

    pick = PICK_BRUSH[tab.app.key]
    size.release(lambda value: gr.Sketchpad(brush=sketch_brush(value)), size, canvas).then(None, js=pick)
    clear.click(lambda: (None, None), None, [canvas, result]).then(None, js=pick)
    button.click(run, [canvas, model, guidance, steps, scheduler, seed, palette], result, **RUN)


def condition_form(tab: Task, index: int,
                   model: AppModel) -> tuple[gr.Column, list[gr.File | gr.Sketchpad | gr.Slider]]:
    """One model's inputs in the Any-model tab (only the first model's shown): per condition an upload or a
    canvas, then per condition a guidance scale."""
    with gr.Column(visible=index == 0, elem_id=f"{tab.app.key}-form-{index}") as column:
        inputs = []
        for encoder in model.pipeline.conditions.encoders:
            name, channels = encoder.name, encoder.num_channels
            label = f"{name} ({channels} channel{'' if channels == 1 else 's'})"
            elem_id = f"{tab.app.key}-{index}-input-{name}"
            if encoder.drawn:
                inputs.append(drawing_canvas(f"{label}: draw here (black on white)", elem_id))
            else:
                inputs.append(gr.File(label=f"{label}: an image (any size up to {MAX_UPLOAD_PIXELS // 1_000_000} MP)",
                                      file_types=["image"], type="filepath", elem_id=elem_id))
        scales = [guidance_slider(f"Guidance for {name} (1 = none)", f"{tab.app.key}-{index}-guidance-{name}")
                  for name in model.conditions]
    return column, inputs + scales


def generate_any(catalog: Catalog, tab: Task, label: str, inputs: Sequence, scales: Sequence[float], steps: int,
                 scheduler: str, seed: int, palette: str = "auto"):
    """The Any-model tab's Generate: `inputs` has, per condition of the model, an upload's path or a
    canvas value (None where nothing was given) and `scales` its guidance scale. The output image."""
    model = catalog.by_label(label)
    tab.check(model.pipeline, label)
    names = model.conditions
    if len(set(names)) < len(names):
        raise CondiffError(f"{label}: this model has a condition twice, so inputs by name cannot tell them "
                           f"apart; use `condiff generate --model {model.path} --input PATH` (one image for all)")
    images = {}
    for encoder, name, value in zip(model.pipeline.conditions.encoders, names, inputs, strict=True):
        if encoder.drawn:
            images[name] = drawn_image(value, f"the {name} canvas")
        elif value is None:
            raise CondiffError(f"no image for the {name} condition: upload one (this model takes one image per "
                               f"condition: {', '.join(names)})")
        else:
            images[name] = open_upload(value)
    output, _ = apply_condition(model, tab, images, steps, scheduler, [float(scale) for scale in scales], seed,
                                steering={"palette": palette})
    return output


def any_model_tab(catalog: Catalog, tab: Task) -> None:
    """Every conditional model, one input per condition. The models are known when the app starts, so
    each gets its form then and the model menu only shows one: no rendering per choice, fixed element
    ids, any number of conditions, and each model keeps its inputs while another one is chosen."""
    models = catalog.for_tab(tab)
    with gr.Row():
        with gr.Column(scale=1):
            model = model_choice(catalog, tab)
            columns, fields = zip(*(condition_form(tab, index, chosen) for index, chosen in enumerate(models)),
                                  strict=True)
            steps, scheduler, seed, palette, button = sampling_and_button(tab)
        with gr.Column(scale=1):
            result = output_image(f"{tab.app.output} (the model's resolution)", f"{tab.app.key}-output")

    @user_errors
    def run(label, steps, scheduler, seed, palette, *values):  # `values`: every form's fields, in order
        index = [chosen.label for chosen in models].index(label)
        start = sum(len(own) for own in fields[:index])
        own = values[start:start + len(fields[index])]
        count = len(models[index].conditions)  # inputs, then as many guidance scales
        return generate_any(catalog, tab, label, own[:count], own[count:], steps, scheduler, seed, palette)

    def show(label):  # the chosen model's form, and no output of another model
        return *(gr.Column(visible=chosen.label == label) for chosen in models), None

    model.change(show, model, [*columns, result]).then(None, js=PICK_BRUSH[tab.app.key])
    inputs = [model, steps, scheduler, seed, palette, *(field for own in fields for field in own)]
    button.click(run, inputs, result, **RUN)


def build_app(catalog: Catalog, gif_folder: Path) -> gr.Blocks:
    builders = {"samples": functools.partial(samples_tab, gif_folder=gif_folder),  # by the tab's form (AppTab)
                "upload": upload_tab, "canvas": canvas_tab, "conditions": any_model_tab}
    with gr.Blocks(title="condiff", analytics_enabled=False, delete_cache=(CLEAN_EVERY, KEEP_FILES)) as app:
        gr.Markdown("# condiff\nSmall pixel-space diffusion models: generate, colorize, sketch to image, and "
                    "any conditional model.")
        gr.Markdown(model_listing(catalog), elem_id="model-listing")
        with gr.Tabs():
            for tab in TABS:
                with gr.Tab(tab.app.title, id=tab.app.key, elem_id=f"tab-{tab.app.key}") as block:
                    if tab.app.key in catalog.notes:
                        gr.Markdown(catalog.notes[tab.app.key], elem_id=f"{tab.app.key}-missing")
                        continue
                    builders[tab.app.form](catalog, tab)
                if tab.app.key in PICK_BRUSH:
                    block.select(None, js=PICK_BRUSH[tab.app.key])
    return app


def serve(catalog: Catalog, host: str, port: int, work: Path) -> None:
    """Serve until interrupted (Ctrl-C); the app's files go into `work`, which the caller removes."""
    # System fonts: the default theme would fetch its fonts from the internet.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    gif_folder = work / "gifs"
    gif_folder.mkdir(parents=True, exist_ok=True)
    app = build_app(catalog, gif_folder)
    app.queue()
    try:
        app.launch(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, show_error=True,
                   theme=theme, css=CSS, ssr_mode=False, footer_links=[], quiet=False)
    except OSError:
        raise CondiffError(f"--host {host} --port {port}: cannot listen there (the port is in use, or the "
                           "address is not one of this machine's); choose another --port") from None
