"""The peer row of issue 41: a conditional model trained by the loop a user would write from diffusers'
unconditional training example, with the condition channels concatenated to the UNet input.

    OMP_NUM_THREADS=1 python benchmarks/peer_conditional_loop.py recipes/own-colorize.yaml \
        --out outputs/peer-own-colorize [--set data.source=FOLDER] [--steps 2500] [--minutes 48]

What it shares with condiff's run of the same recipe, so that only the training recipe differs: the
training images (the recipe's data section, its held-out images left out), the UNet's shape, the batch
size, and the condition channels (the recipe's encoders, augmentations included: the peer is not asked to
write an edge extractor). What is the example's, not condiff's: epsilon prediction on linear betas
(`DDPMScheduler(num_train_timesteps=1000)`), a uniform timestep and a plain squared error, AdamW at lr 1e-4
with weight decay 1e-6 and a cosine schedule after 500 warm-up steps, EMA 0.9999 with its warm-up, no
condition dropout. It stops at `--steps` or `--minutes`, whichever comes first.

The EMA weights are saved as a condiff model folder with the recipe beside them, so that `condiff eval
TASK --model OUT --data FOLDER` measures it on the same held-out images as condiff's own run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml
from diffusers import DDPMScheduler
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from condiff.conditions.stack import ConditionStack
from condiff.config import load_recipe
from condiff.data.sources import build_dataset
from condiff.images import to_model_tensor
from condiff.model import build_unet
from condiff.model_folder import save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], help="a recipe override, as condiff train takes")
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's train.max_steps")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    recipe = load_recipe(args.recipe, args.set)
    steps = args.steps or recipe.train.max_steps
    batch = recipe.train.batch_size
    torch.manual_seed(args.seed)
    images = torch.as_tensor(build_dataset(recipe.data).images)  # uint8 (N, H, W, 3), held-out images left out
    conditions = ConditionStack(conditions=[{**spec.to_dict(), "dropout": 0.0} for spec in recipe.conditions])
    unet = build_unet(recipe.model, recipe.data.resolution, in_channels=3 + conditions.channels)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=1e-6)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=500, num_training_steps=steps)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    print(f"peer loop: {len(images)} training images, {steps} steps of {batch}, "
          f"{conditions.channels} condition channels ({', '.join(conditions.names)})", flush=True)

    unet.train()
    start, step = time.perf_counter(), 0
    while step < steps:
        for order in torch.randperm(len(images)).split(batch):
            if len(order) < batch:
                continue  # drop_last, as the example's loader leaves a short batch to the next epoch
            clean = to_model_tensor(images[order])
            flip = torch.rand(len(clean)) < 0.5
            clean = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
            with torch.no_grad():
                condition = conditions.encode_training(clean, apply_dropout=False)
            noise = torch.randn_like(clean)
            timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),))
            noisy = scheduler.add_noise(clean, noise, timesteps)
            loss = torch.nn.functional.mse_loss(unet(torch.cat([noisy, condition], dim=1), timesteps).sample, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(unet.parameters())
            step += 1
            minutes = (time.perf_counter() - start) / 60
            if step % 100 == 0:
                print(f"step {step}: loss {loss.item():.4f}, {minutes:.1f} min", flush=True)
            if step >= steps or (args.minutes is not None and minutes >= args.minutes):
                steps = step
                break

    ema.copy_to(unet.parameters())
    out = Path(args.out)
    save_model(out, unet.eval(), scheduler, conditions)
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    minutes = (time.perf_counter() - start) / 60
    (out / "peer.json").write_text(json.dumps({"steps": steps, "batch": batch, "minutes": round(minutes, 2),
                                               "recipe": args.recipe, "set": args.set}, indent=2))
    print(f"peer loop: {steps} steps in {minutes:.1f} min; saved to {out}", flush=True)


if __name__ == "__main__":
    main()
