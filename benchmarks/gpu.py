"""GPU throughput of HRM at paper scale: training and inference, eager and compiled, with MFU.

One command, one table (issue 8):

    python benchmarks/gpu.py                       # `arc` preset, bf16, on the visible GPU
    python benchmarks/gpu.py --out gpu.json        # + every figure as JSON
    python benchmarks/gpu.py --device cpu --preset tiny --train-batches 4,8 --infer-batches 8 --compile off
                                                   # CPU smoke run (what CI exercises)

Rows:
  * train -- one real optimiser step per iteration: ACT step in training mode (including the
    no-grad target-Q forward), ``act_loss``, backward, AdamAtan2 on the dense weights and
    SparseSignSGD on the puzzle table, at the largest batch of ``--train-batches`` that fits
    (probed once, eagerly, in increasing order with one step each; the first out-of-memory
    ends the ladder; the compiled run reuses the answer rather than recompiling per shape).
    Batches are synthetic and already on the device: the model's ceiling, not the loader's.
  * infer -- ``HRM.rollout`` over ``halt_max_steps`` ACT steps with per-step argmax and
    log-probabilities (what ``arcpipe infer`` runs), no grad, per batch of ``--infer-batches``
    (compiled: only the batch that was fastest eagerly).
  * each with ``torch.compile`` off and on (``--compile``).

FLOPs are counted by :mod:`hrm.flops` (matrix products only, 2 per multiply-add, no
recomputation; tests/test_flops.py checks the count against torch's FlopCounterMode). MFU =
counted FLOPs / time / the datasheet's dense bf16 peak; the last column divides by the
bf16 matmul rate measured on this card instead (8192^3 products), which is the ceiling the
model can actually approach. Peak memory is ``torch.cuda.max_memory_allocated`` for the row.
The SDPA column names the attention kernel torch actually dispatched (read off a profile of
one step: flash / mem-efficient / cudnn / math).

The closing table turns the measured rates into wall-clock estimates for the paper's full
runs (1000 augmentations, ``pipelines/arc1.toml`` / ``arc2.toml``) on 1 and 8 GPUs.
"""
from __future__ import annotations

import gc
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import typer
from rich.console import Console
from rich.table import Table

import hrm
from arcpipe.errors import is_out_of_memory
from hrm.flops import datasheet_peak, rollout_flops, step_flops

# The paper's full runs as arcpipe plans them (pipelines/arc1.toml, arc2.toml): training rows and
# test rows of the augment stage at n_aug 1000, canvas 30, seed 0 (read off the stage manifests'
# counts; tests/test_gpu_benchmark.py rebuilds them), 100 arcpipe epochs (= the reference's
# 100000: a reference epoch visits one variant per task, ours every variant), global batch 768.
PAPER_RUNS = {
    "ARC-AGI-1": {"train_rows": 2_809_254, "test_rows": 385_457, "epochs": 100, "batch": 768},
    "ARC-AGI-2": {"train_rows": 4_338_636, "test_rows": 165_222, "epochs": 100, "batch": 768},
}
SDPA_KERNELS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "mem-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "aten::_scaled_dot_product_attention_math": "math",
}

app = typer.Typer(add_completion=False)
console = Console(width=160)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_matmul_peak(device: torch.device, n: int = 8192, reps: int = 10) -> float | None:
    """bf16 FLOP/s of an ``n^3`` matrix product on random data (median of ``reps`` after warm-up)."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del a, b
    return 2 * n**3 / statistics.median(times)


def sdpa_backend(fn: Callable[[], Any]) -> str:
    """Which SDPA kernel(s) ``fn`` dispatches, from the aten ops a CPU-side profile records
    (the dispatcher's choice is visible there on every device, compiled code included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = {e.name for e in prof.events()}
    found = sorted({label for op, label in SDPA_KERNELS.items() if op in names})
    return "+".join(found) or "none seen"


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _batch(cfg: hrm.HRMConfig, batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = {
        "inputs": torch.randint(2, cfg.vocab_size, (batch, cfg.seq_len), generator=g),
        "labels": torch.randint(2, cfg.vocab_size, (batch, cfg.seq_len), generator=g),
        "puzzle_identifiers": torch.randint(1, cfg.num_puzzle_identifiers, (batch,), generator=g),
    }
    return {k: v.to(device) for k, v in data.items()}


def _timed(step: Callable[[], Any], device: torch.device, iters: int, warmup: int) -> float:
    """Seconds per call: warm-up calls (compilation, autotuning, allocator growth) untimed."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def _peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _case(kind: str, cfg: hrm.HRMConfig, device: torch.device, batch: int, compile: bool, flops: int,
          measure: Callable[[hrm.HRM], tuple[float, str]]) -> dict | None:
    """Build a fresh model, run ``measure(model) -> (seconds per iteration, SDPA kernel)``, and
    turn it into a result row; None if it ran out of memory."""
    _free()
    _reset_memory(device)
    model = None
    try:
        torch.manual_seed(0)
        model = hrm.HRM(cfg, compile=compile).to(device)
        dt, backend = measure(model)
    except (RuntimeError, torch.OutOfMemoryError) as e:
        if is_out_of_memory(e):
            return None
        raise
    finally:
        model = None  # noqa: F841  (drop the last reference before freeing the cache)
        _free()
    return {"kind": kind, "batch": batch, "compile": compile, "s_per_iter": dt, "tokens_per_s": batch * cfg.seq_len / dt,
            "sequences_per_s": batch / dt, "flops_per_iter": flops, "flop_per_s": flops / dt, "peak_gib": _peak_memory(device),
            "sdpa": backend}


def train_case(cfg: hrm.HRMConfig, device: torch.device, batch: int, compile: bool, iters: int, warmup: int) -> dict | None:
    """One training configuration (a full optimiser step per iteration); None if it does not fit."""

    def measure(model: hrm.HRM) -> tuple[float, str]:
        model.train()
        emb = {id(p) for p in model.puzzle_emb.parameters()} if cfg.puzzle_emb_ndim > 0 else set()
        opt = hrm.AdamAtan2([p for p in model.parameters() if p.requires_grad and id(p) not in emb], lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
        sparse = hrm.SparseSignSGD(model.puzzle_emb, lr=1e-2, weight_decay=0.1) if cfg.puzzle_emb_ndim > 0 else None
        data = _batch(cfg, batch, device)
        state = {"carry": model.initial_carry(data)}

        def step() -> None:
            state["carry"], out = model(state["carry"], data)
            loss, _ = hrm.act_loss(state["carry"], out)
            (loss / batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if sparse is not None:
                sparse.step()
                sparse.zero_grad(set_to_none=True)

        dt = _timed(step, device, iters, warmup)
        carry = state["carry"]
        with torch.no_grad():
            return dt, sdpa_backend(lambda: model._step_fn(carry.z_H, carry.z_L, carry.current_data))

    return _case("train", cfg, device, batch, compile, step_flops(cfg, batch).train, measure)


def infer_case(cfg: hrm.HRMConfig, device: torch.device, batch: int, compile: bool, iters: int, warmup: int) -> dict | None:
    """One inference configuration (a full rollout per iteration); None if it does not fit."""

    def measure(model: hrm.HRM) -> tuple[float, str]:
        model.eval()
        data = _batch(cfg, batch, device, seed=1)
        with torch.inference_mode():
            dt = _timed(lambda: model.rollout(data), device, iters, warmup)
            z_H, z_L = model.inner.initial_states(batch, device)
            return dt, sdpa_backend(lambda: model._step_fn(z_H, z_L, data))

    return _case("infer", cfg, device, batch, compile, rollout_flops(cfg, batch), measure)


def largest_fitting(run: Callable[[int], dict | None], ladder: list[int]) -> tuple[dict | None, list[int]]:
    """Try batches in increasing order; return the last that fitted and the ones that did not."""
    best, failed = None, []
    for b in sorted(ladder):
        with console.status(f"  batch {b} ..."):
            r = run(b)
        if r is None:
            failed.append(b)
            break
        best = r
    return best, failed


def paper_run_estimates(cfg: hrm.HRMConfig, train_flop_per_s: float, infer_flop_per_s: float, gpus: tuple[int, ...] = (1, 8)) -> list[dict]:
    """Wall-clock of the full paper runs at the measured rates. Multi-GPU assumes linear scaling
    (data parallel: one all-reduce of ~109 MB of fp32 gradients per step, small next to a step
    of ~0.4 PFLOP) -- an assumption until measured."""
    rows = []
    for name, run in PAPER_RUNS.items():
        steps = math.ceil(run["epochs"] * run["train_rows"] / run["batch"])
        train_flops = steps * step_flops(cfg, run["batch"]).train
        infer_flops = rollout_flops(cfg, run["test_rows"])
        for g in gpus:
            rows.append({"run": name, "gpus": g, "steps": steps, "train_flops": train_flops, "infer_flops": infer_flops,
                         "train_hours": train_flops / (train_flop_per_s * g) / 3600,
                         "infer_hours": infer_flops / (infer_flop_per_s * g) / 3600})
    return rows


def _ladder(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@app.command()
def main(
    preset: str = typer.Option("arc", help="model preset (the paper's is 'arc')"),
    device: str = typer.Option("cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu"),
    train_batches: str = typer.Option("32,64,128,192,256,384,512,768,1024", help="training batch ladder (per GPU)"),
    infer_batches: str = typer.Option("256,1024,2048", help="inference batches, each timed"),
    compile: str = typer.Option("off,on", help="torch.compile settings to measure: off, on, or off,on"),
    iters: int = typer.Option(5, help="timed iterations per row"),
    warmup: int = typer.Option(2, help="untimed iterations per row (compilation happens here)"),
    seq_len: int = typer.Option(0, help="override the preset's seq_len (0 = preset)"),
    out: Path = typer.Option(None, help="write every figure as JSON here"),
) -> None:
    """Measure training and inference throughput, MFU and memory; estimate the paper runs."""
    dev = torch.device(device)
    over = {"num_puzzle_identifiers": 4096}
    if seq_len:
        over["seq_len"] = seq_len
    cfg = hrm.HRMConfig.preset(preset, **over)
    modes = [{"off": False, "on": True}[m.strip()] for m in compile.split(",") if m.strip()]
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        with console.status("measuring the bf16 matmul ceiling ..."):
            measured = measured_matmul_peak(dev)
    else:
        name, measured = platform.processor() or "cpu", None
    peak = datasheet_peak(name) if dev.type == "cuda" else None
    dtype = cfg.forward_dtype if dev.type == "cuda" else "float32"  # HRM computes fp32 on CPU
    console.print(f"[bold]{name}[/bold] | torch {torch.__version__} | CUDA {torch.version.cuda} | preset {preset} "
                  f"({hrm.count_parameters(cfg)['trainable']:,} dense params), {dtype}, seq_len {cfg.seq_len}")
    if measured:
        console.print(f"bf16 matmul 8192^3 measured: {measured / 1e12:.0f} TFLOP/s (datasheet {peak / 1e12 if peak else float('nan'):.0f})")

    results: list[dict] = []
    notes: list[str] = []
    ladder: list[dict] = []
    estimates: list[dict] = []

    def save() -> None:
        # Written after every row, not only at the end: a device call cut off at its time limit
        # still brings back every figure measured until then.
        for r in results:
            r["mfu"] = r["flop_per_s"] / peak if peak else None
            r["of_measured_matmul"] = r["flop_per_s"] / measured if measured else None
        if out:
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps({"device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "preset": preset,
                                       "config": cfg.to_dict(), "datasheet_peak": peak, "measured_matmul_peak": measured,
                                       "results": results, "train_ooms": ladder, "notes": notes, "estimates": estimates}, indent=2))
            tmp.replace(out)

    def done(r: dict) -> None:
        results.append(r)
        save()
        console.print(f"  {r['kind']} compile={'on' if r['compile'] else 'off'} batch {r['batch']}: {r['s_per_iter']:.3f} s/iter, "
                      f"{r['flop_per_s'] / 1e12:.3g} TFLOP/s" + (f", MFU {r['mfu']:.1%}" if r["mfu"] is not None else ""))
    train_batch: int | None = None
    infer_batch: int | None = None
    for comp in modes:
        label = "on" if comp else "off"
        console.print(f"train, compile={label}")
        if train_batch is None:
            # Probe the ladder once (eager, 1 timed step each); compiled runs reuse its answer,
            # since every new batch shape would mean a new compilation.
            best, failed = largest_fitting(lambda b: train_case(cfg, dev, b, False, 1, 1), _ladder(train_batches))
            ladder = [{"batch": b} for b in failed]
            if best is None:
                notes.append(f"train: even batch {min(_ladder(train_batches))} does not fit")
            else:
                train_batch, first_oom = best["batch"], (failed[0] if failed else None)
        if train_batch is not None:
            with console.status(f"  batch {train_batch}, {iters} timed steps ..."):
                r = train_case(cfg, dev, train_batch, comp, iters, warmup)
            if r is None:
                notes.append(f"train compile={label}: batch {train_batch} (largest eager) out of memory")
            else:
                r["largest_fitting"], r["first_oom"] = True, first_oom
                done(r)
        console.print(f"infer, compile={label}")
        # Eager: every batch of the list (throughput vs batch); compiled: the best eager batch only.
        for b in _ladder(infer_batches) if infer_batch is None else [infer_batch]:
            with console.status(f"  batch {b} ..."):
                r = infer_case(cfg, dev, b, comp, max(1, iters // 2), 1)
            if r is None:
                notes.append(f"infer compile={label}: batch {b} out of memory")
                break
            done(r)
        eager_infers = [r for r in results if r["kind"] == "infer"]
        if infer_batch is None and eager_infers:
            infer_batch = max(eager_infers, key=lambda r: r["flop_per_s"])["batch"]

    table = Table(title=f"HRM '{preset}' on {name}: {dtype}, seq_len {cfg.seq_len}, halt_max_steps {cfg.halt_max_steps}")
    for col in ("kind", "compile", "batch", "s/iter", "tokens/s", "seq/s", "TFLOP/s", "MFU (datasheet)", "of measured matmul", "peak GiB", "SDPA"):
        table.add_column(col, justify="right" if col not in ("kind", "SDPA") else "left")
    for r in results:
        oom = f" (OOM at {r['first_oom']})" if r.get("first_oom") else (" (largest tried)" if r.get("largest_fitting") else "")
        table.add_row(
            r["kind"], "on" if r["compile"] else "off", f"{r['batch']}{oom}", f"{r['s_per_iter']:.3f}", f"{r['tokens_per_s']:,.0f}",
            f"{r['sequences_per_s']:,.1f}", f"{r['flop_per_s'] / 1e12:.3g}", f"{r['mfu']:.1%}" if r["mfu"] is not None else "-",
            f"{r['of_measured_matmul']:.1%}" if r["of_measured_matmul"] is not None else "-",
            f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-", r["sdpa"],
        )
    console.print(table)
    for n in notes:
        console.print(f"note: {n}")

    trains = [r for r in results if r["kind"] == "train"]
    infers = [r for r in results if r["kind"] == "infer"]
    if trains and infers and preset == "arc" and not seq_len:
        tr, inf = max(trains, key=lambda r: r["flop_per_s"]), max(infers, key=lambda r: r["flop_per_s"])
        estimates[:] = paper_run_estimates(cfg, tr["flop_per_s"], inf["flop_per_s"])
        est = Table(title=f"Paper runs at the best measured rates (train {tr['flop_per_s'] / 1e12:.0f}, infer {inf['flop_per_s'] / 1e12:.0f} TFLOP/s per GPU)")
        for col in ("run", "GPUs", "train steps", "train EFLOP", "train h", "infer EFLOP", "infer h"):
            est.add_column(col, justify="right")
        for e in estimates:
            est.add_row(e["run"], str(e["gpus"]), f"{e['steps']:,}", f"{e['train_flops'] / 1e18:.0f}", f"{e['train_hours']:.1f}",
                        f"{e['infer_flops'] / 1e18:.2f}", f"{e['infer_hours']:.2f}")
        console.print(est)
    save()
    if out:
        console.print(f"wrote {out}")


if __name__ == "__main__":
    app()
