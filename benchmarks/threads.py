"""Does the torch thread count change a CPU training's numbers? Trains the same ``tiny`` run
(demo data: 13 ARC-AGI-1 evaluation tasks with sides <= 6, 8 variants, 7x7 canvas, batch 32,
deterministic mode) once per thread count, each in its own process and its own scratch cache
(the stage key does not include threads, so a shared cache would return the first run), and
compares the per-step loss curves bit for bit.

Why: the same stage keys retrained on another CPU model gave pass@2 several points apart
(README, outer-loop-59tasks-24k), and manifests record the torch thread count next to the CPU
model; this says whether the thread count alone moves the result on this machine.

    python benchmarks/threads.py --steps 300 --threads 1,2     # the figure in README.md
    python benchmarks/threads.py --steps 1 --threads 1         # which CPU kind is this? (seconds)

The first step's loss already differs between the CPU kinds seen so far, so the script names the
kind it matches: a machine of that kind is a candidate for replaying its reports (replay.py decides).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

# the first step's lm_loss (to 10 decimals) on each CPU kind seen (benchmarks/README.md, "Forcing
# the kernel level"): the kind is the vendor with torch's kernel level, not the CPU model
KINDS = {
    "3.0544136558": "Intel, AVX512 kernels (Xeon family 6 models 106, 167)",
    "3.0544136550": "AMD, AVX512 kernels (EPYC family 25 model 17, family 26 model 2)",
    "3.0544136744": "AMD, AVX2 kernels (EPYC family 25 model 1, or an AVX512 EPYC with ATEN_CPU_CAPABILITY=avx2)",
}

CHILD = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from arcpipe.augment import augment
from arcpipe.train import train
root, steps = sys.argv[2], int(sys.argv[3])
ds = augment("arc1:evaluation", extra_train="none", n_aug=8, train_aug=8, canvas=7, max_side=6, n_jobs=1, root=root)
st = train(ds, preset="tiny", max_steps=steps, global_batch_size=32, seed=0, deterministic=True, root=root, progress=False)
print(st.path / "metrics.parquet")
"""


def main() -> None:
    import polars as pl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    args = ap.parse_args()
    import torch  # before host(), so that the record includes torch's CPU kernel level

    from arcpipe.cache import describe_host, host

    machine = {k: v for k, v in host().items() if k != "torch_threads"}  # each child sets its own
    print(f"{describe_host(machine)}, torch {torch.__version__}")
    scratch = Path(tempfile.mkdtemp(prefix="arcpipe-bench-threads-"))
    curves = {}
    for n in (int(t) for t in args.threads.split(",")):
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(scratch / f"t{n}"), str(args.steps)],
                             capture_output=True, text=True, check=True)
        curves[n] = pl.read_parquet(out.stdout.strip().splitlines()[-1])["lm_loss"].to_numpy()
        print(f"{n} thread(s): lm_loss step 1 {curves[n][0]:.10f}, step {args.steps} {curves[n][-1]:.10f}")
    kind = KINDS.get(f"{next(iter(curves.values()))[0]:.10f}")
    print(f"CPU kind: {kind}" if kind else "CPU kind: none seen before (its runs will replay no committed report)")
    first, *rest = curves
    for n in rest:
        same = bool((curves[n] == curves[first]).all())
        diff = float(abs(curves[n] - curves[first]).max())
        print(f"{n} vs {first} thread(s): {'bit-identical' if same else f'differ, max |d lm_loss| {diff:.3g}'} over {args.steps} steps")


if __name__ == "__main__":
    main()
