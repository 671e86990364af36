"""Where a training step's host time goes: condiff's trainer and the plain loop under cProfile.

    python benchmarks/profile_training.py [--steps 200] [--batch 64] [--top 25] [--device cuda]

Runs the two loops of bench_training_throughput.py one after the other in this process and prints, for
each, the functions with the most time of their own. On a GPU a small UNet is bound by the host
launching kernels, so this is where the gap between the loops shows; time inside `.item()` or
`.tolist()` is the host waiting for the GPU. cProfile slows Python down, so compare the two tables
with each other, not with the benchmark's images per second.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

from bench_training_throughput import run_condiff, run_plain

from condiff.device import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    args = parser.parse_args()
    device = pick_device(args.device)
    for name, loop in (("plain", run_plain), ("condiff", run_condiff)):
        loop(5, args.batch, device)  # warm-up: CUDA context, cuDNN plans and imports stay out of the profile
        profile = cProfile.Profile()
        result = profile.runcall(loop, args.steps, args.batch, device)
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.top)
        print(f"== {name}: {args.steps} steps in {result['seconds']:.2f} s "
              f"({1000 * result['seconds'] / args.steps:.1f} ms per step, profiled)")
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])


if __name__ == "__main__":
    main()
