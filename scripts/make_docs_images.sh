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
$bin/condiff noise /tmp/condiff-docs-noun/0.png --t 0 10 25 50 75 99 --out $out/noise-strip.png
rm -rf /tmp/condiff-docs-noun
$bin/condiff schedules --out $out/schedules.png
$bin/condiff sample --model $model --num 16 --scheduler dpm --steps 25 --seed 0 \
    --out $out/quickstart-samples.png --gif $out/quickstart-denoise.gif
cp $model/samples/final.png $out/train-final-preview.png
