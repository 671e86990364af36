"""Written by the code of commit ab8091b (before the Denoiser): a tiny folder with every setting that lived in
model_index.json, and its fixed-seed samples."""
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from condiff.config import recipe_from_dict
from condiff.images import open_image, to_uint8
from condiff.model_folder import load_pipeline
from condiff.sampling import make_sampler
from condiff.training.from_recipe import train_recipe

out = Path(sys.argv[1])
values = {
  "data": {"size": 16, "resolution": 32},
  "model": {"channels": [16, 16], "attention": [False, False], "layers_per_block": 1, "norm_num_groups": 8,
            "palette_head": True, "pixel_likelihood": True, "pixel_likelihood_until": 20, "self_condition": True},
  "scheduler": {"num_train_timesteps": 50},
  "conditions": [{"name": "sketch", "fill": True, "dropout": 0.2}],
  "train": {"output_dir": str(out / "folder"), "max_steps": 3, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1,
            "sample_every": 0, "checkpoint_every": 0, "log_every": 1, "tensorboard": False, "ema": False},
}
train_recipe(recipe_from_dict(values), overwrite=True)

for extra in ("checkpoints", "samples", "logs", "training_summary.json", "recipe.yaml", "README.md"):
    p = out / "folder" / extra
    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
pipeline = load_pipeline(out / "folder")
pipeline.scheduler = make_sampler(pipeline.scheduler, "dpm", 6)
drawing = open_image(Path(__file__).parents[3] / "docs/images/input-drawing.png")
for name, kwargs in {"default": {}, "off": {"palette": "off", "silhouette": "off"}}.items():
    images = pipeline(drawing, num_images_per_input=2, num_inference_steps=6, guidance=2.0, seed=3,
                      output_type="latent", **kwargs).images
    Image.fromarray(np.concatenate(list(to_uint8(images)), axis=1)).save(out / f"samples-{name}.png")
print(sorted(p.name for p in (out / "folder").rglob("*")))
