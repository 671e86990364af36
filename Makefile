# Two commands for a fresh machine: `make demo` (pictures in minutes) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch; on a machine with a GPU, install the CUDA build of your choice first.
TORCH_SPEC ?= torch==2.13.0
DEMO := outputs/quickstart

.PHONY: demo test install lint clean

$(BIN)/condiff: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,app]"
	touch $@

install: $(BIN)/condiff

demo: install
	$(BIN)/condiff train recipes/quickstart.yaml --overwrite
	$(BIN)/condiff sample --model $(DEMO) --num 16 --steps 25 --out $(DEMO)/samples.png --gif $(DEMO)/denoise.gif
	@# The shipped models (no training needed): a grayscale Noun colorized, a line drawing turned into a Noun.
	$(BIN)/condiff sample --num 16 --out outputs/demo/shipped-samples.png
	$(BIN)/condiff colorize docs/images/input-gray-noun.png --num 4 --out outputs/demo/colorized.png
	$(BIN)/condiff sketch2img docs/images/input-drawing.png --num 4 --out outputs/demo/sketch2img.png
	@echo
	@echo "Model folder:   $(DEMO)  (loads with diffusers.DDPMPipeline.from_pretrained)"
	@echo "Sample grid:    $(DEMO)/samples.png"
	@echo "Denoising GIF:  $(DEMO)/denoise.gif"
	@echo "Shipped models: outputs/demo/shipped-samples.png, colorized-*.png, sketch2img-*.png"
	@echo "TensorBoard:    $(BIN)/tensorboard --logdir $(DEMO)/logs"

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf outputs .pytest_cache .ruff_cache
