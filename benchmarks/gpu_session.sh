#!/usr/bin/env bash
# Every GPU number in docs/benchmarks.md, taken in one go on a lent GPU machine (about 9 minutes):
# training throughput, samplers, and the defaults sweep trained on the GPU but counted in CPU-minutes.
#   RESULTS=dir bash benchmarks/gpu_session.sh      (default dir: benchmarks/results/gpu)
#   ONLY_THROUGHPUT=1 bash benchmarks/gpu_session.sh   (issue 42's GPU throughput rows only, about 6 minutes)
# Each stage writes its JSON as soon as it ends, so a stage that fails or runs out of time loses only itself.
# Round 3 of the sweep (issue 14: the wider model and the loss weighting at 60 CPU-minutes), next time a GPU is lent:
#   VARIANTS="min-snr-5+batch-32 min-snr-5+batch-32+wide-64 batch-32+wide-64" PARALLEL=3 \
#     SWEEP_JSON=defaults_sweep_round3 bash benchmarks/gpu_session.sh
set -u
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
results=${RESULTS:-benchmarks/results/gpu}
sweep=${SWEEP_DIR:-/tmp/condiff-sweep}
deadline=$((SECONDS + ${BUDGET_SECONDS:-540}))
mkdir -p "$results"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python -c "import torch, diffusers, datasets, pyarrow; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
  'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__, torch.cuda.get_device_name())"

if [ -z "${VARIANTS:-}" ]; then  # VARIANTS="a b": only the sweep, of those variants
  echo "== throughput (issue 42: batch 64 and 256, float32, bf16 and compiled bf16, against the plain loop)"
  timeout 200 python benchmarks/bench_training_throughput.py --steps 200 --batch 64 --bf16 --compile \
    --json "$results/throughput.json"
  timeout 200 python benchmarks/bench_training_throughput.py --steps 200 --batch 256 --bf16 --compile \
    --json "$results/throughput_batch256.json"
  [ -n "${ONLY_THROUGHPUT:-}" ] && { echo "== done in $SECONDS s"; exit 0; }
  echo "== training levers (compile, channels_last, bf16, matmul attention on the UNet step)"
  timeout 240 python benchmarks/bench_training_levers.py --batch 256 --steps 50 --json "$results/levers_batch256.json"
  echo "== samplers"
  timeout 240 python benchmarks/bench_sampling.py --num 1000 --repeats 3 --json "$results/sampling.json"
fi
echo "== defaults sweep"
# Train until 2.5 minutes before the deadline, leaving time to score; unreached targets are reported as such.
wall=$(python -c "print(max(1.0, ($deadline - $SECONDS - 150) / 60))")
# One CPU thread each: a dozen runs share the host's cores, and their work is on the GPU.
OMP_NUM_THREADS=1 python benchmarks/bench_defaults_sweep.py train --step-times benchmarks/results/step_times.json --out "$sweep" \
    --parallel "${PARALLEL:-16}" --wall-minutes "$wall" ${VARIANTS:+--only $VARIANTS}
for log in "$sweep"/*/train.log; do echo "$log: $(tail -c 300 "$log" | tr '\r' '\n' | tail -n 2 | head -n 1)"; done
timeout $((deadline - SECONDS > 30 ? deadline - SECONDS : 30)) python benchmarks/bench_time_to_quality.py "$sweep"/* \
    --step-times benchmarks/results/step_times.json --minutes 5 15 30 45 60 --json "$results/${SWEEP_JSON:-defaults_sweep}.json"
echo "== done in $SECONDS s"
