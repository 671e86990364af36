"""How fast the Nouns dataset makes images, next to one training step of a small UNet on the CPU.

    python benchmarks/bench_nouns_render.py

Shows that data does not slow training on the CPU: even in the main process, making a batch costs a
small fraction of the step it feeds. (On a GPU a step takes tens of milliseconds, which is why the
DataLoader fetches a whole batch at once through `NounsDataset.__getitems__`.) Runs in well under a minute.
"""

from __future__ import annotations

import time

import torch
from diffusers import UNet2DModel

from condiff.data.nouns import NounsDataset, load_art

BATCH = 64


def seconds_per_call(fn, repeats: int) -> float:
    """Best of `repeats` timings; the best is the least disturbed by other work on the machine."""
    fn()  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def training_step_seconds() -> float:
    model = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(64, 128, 128),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(BATCH, 3, 32, 32)
    timesteps = torch.randint(0, 1000, (BATCH,))

    def step() -> None:
        noise = torch.randn_like(images)
        loss = torch.nn.functional.mse_loss(model(images + noise, timesteps).sample, noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return seconds_per_call(step, repeats=2)


def main() -> None:
    art = load_art()
    dataset = NounsDataset(size=100_000, seed=0)
    nouns = [dataset.noun(i) for i in range(BATCH)]

    render_one = seconds_per_call(lambda: art.render(nouns[0]), repeats=1000)
    render_batch = seconds_per_call(lambda: art.render_batch(nouns), repeats=200)
    # BATCH items, each with its own rng, image, labels and caption: one by one, and as a DataLoader asks.
    items = seconds_per_call(lambda: [dataset[i] for i in range(BATCH)], repeats=20)
    batch_items = seconds_per_call(lambda: dataset.__getitems__(range(BATCH)), repeats=20)
    step = training_step_seconds()

    for label, seconds, images in [
        ("render one Noun", render_one, 1),
        (f"render_batch of {BATCH}", render_batch, BATCH),
        (f"{BATCH} items one by one", items, BATCH),
        (f"{BATCH} items, __getitems__", batch_items, BATCH),
    ]:
        print(f"{label + ':':27}{seconds * 1e3:9.3f} ms  ({images / seconds:>9,.0f} images/s)")
    label = f"training step, batch {BATCH}:"
    print(
        f"{label:27}{step * 1e3:9.1f} ms  "
        f"(UNet2DModel (64, 128, 128), 32 px, forward+backward+AdamW, CPU, {torch.get_num_threads()} threads)"
    )
    print(f"render time is {100 * render_batch / step:.2f}% of a training step (render_batch)")
    print(f"render time is {100 * batch_items / step:.2f}% of a training step (a DataLoader's batch)")


if __name__ == "__main__":
    main()
