#!/usr/bin/env bash
# Regenerates the pictures in docs/images with the commands the docs describe.
# Needs a trained quickstart model (make demo) in outputs/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
out=docs/images
model=outputs/quickstart
mkdir -p "$out"
$bin/condiff data preview nouns --num 64 --out $out/nouns-preview.png
$bin/condiff data export nouns --num 1 --out /tmp/condiff-docs-noun --format folder >/dev/null 2>&1 || true
$bin/condiff noise /tmp/condiff-docs-noun/0.png --out $out/noise-strip.png
rm -rf /tmp/condiff-docs-noun
$bin/condiff schedules --out $out/schedules.png
$bin/condiff sample --model $model --num 16 --scheduler dpm --steps 25 --seed 0 \
    --out $out/quickstart-samples.png --gif $out/quickstart-denoise.gif
cp $model/samples/final.png $out/train-final-preview.png

# Conditional models (recipes/colorize-quick.yaml, recipes/sketch2img-quick.yaml trained first).
$bin/python - <<'PY'
# Inputs: a grayscale Noun, an ordinary "photograph" (a smooth synthetic scene), a hand-style drawing.
import numpy as np
from PIL import Image, ImageDraw
from condiff.data.nouns import NounsDataset

Image.fromarray(NounsDataset(size=10, seed=123)[3]["image"]).convert("L").save("docs/images/input-gray-noun.png")
y, x = np.mgrid[0:240, 0:320]
photo = np.stack([120 + 100 * np.sin(x / 40), 100 + 80 * np.cos(y / 30), 160 - 60 * np.sin((x + y) / 60)], -1)
photo = Image.fromarray(photo.clip(0, 255).astype(np.uint8))
ImageDraw.Draw(photo).ellipse((100, 60, 220, 180), fill=(230, 200, 60))
photo.save("docs/images/input-photo.jpg")
drawing = Image.new("RGB", (512, 512), "white")
pen = ImageDraw.Draw(drawing)
pen.rectangle((140, 90, 380, 300), outline="black", width=8)          # head
pen.rectangle((100, 170, 230, 240), outline="black", width=8)         # left lens
pen.rectangle((270, 170, 400, 240), outline="black", width=8)         # right lens
pen.line((230, 200, 270, 200), fill="black", width=8)                 # bridge
pen.rectangle((180, 300, 340, 512), outline="black", width=8)         # body
drawing.save("docs/images/input-drawing.png")
PY
$bin/condiff colorize docs/images/input-gray-noun.png --model outputs/colorize-quick --num 4 --seed 0 \
    --out docs/images/colorize-noun.png
$bin/condiff colorize docs/images/input-photo.jpg --model outputs/colorize-quick --full-res \
    --out docs/images/colorize-photo.png
$bin/condiff encode --condition sketch docs/images/input-drawing.png --out docs/images/sketch-encoded.png
$bin/condiff sketch2img docs/images/input-drawing.png --model outputs/sketch2img-quick --num 4 --seed 0 \
    --guidance 2 --out docs/images/sketch2img.png --gif

# The shipped models on held-out Nouns, with and without the palette (docs/colorize.md, sketch2img.md, sample.md).
$bin/python scripts/make_obedience_grids.py

# The web app (docs/app.md): tests/test_app.py drives it in Chromium and screenshots each tab.
CONDIFF_APP_TEST_MODELS=outputs/quickstart:outputs/colorize-quick:outputs/sketch2img-quick \
    CONDIFF_APP_SCREENSHOTS=docs/images $bin/python -m pytest tests/test_app.py -q
