"""Forward+backward throughput of HRM for the ``tiny`` and ``arc`` presets.

One "iteration" is what a training step costs the model: one ACT step in training mode
(including the no-grad target-Q forward) plus ``act_loss`` and backward -- no optimizer step.
Reports tokens/s (label positions processed per second). On CUDA it also reports model FLOP/s
and MFU = achieved FLOP/s / peak dense bf16 FLOP/s, with the FLOP count of :mod:`hrm.flops`
(its terms are in the JSON output). benchmarks/gpu.py is the fuller GPU benchmark (issue 8).

Usage:  python benchmarks/model.py [--presets tiny,arc] [--device cpu|cuda] [--out results.json]
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.table import Table

import hrm
from hrm.flops import datasheet_peak, step_flops

# Peak dense bf16 tensor-core FLOP/s by device-name fragment (vendor datasheets, no sparsity).

app = typer.Typer(add_completion=False)
console = Console(width=140)


def bench_one(preset: str, device: torch.device, batch: int, seq_len: int, iters: int, warmup: int, compile: bool) -> dict:
    cfg = hrm.HRMConfig.preset(preset, seq_len=seq_len, num_puzzle_identifiers=1024)
    torch.manual_seed(0)
    model = hrm.HRM(cfg, compile=compile).to(device).train()
    g = torch.Generator().manual_seed(0)
    data = {
        "inputs": torch.randint(2, cfg.vocab_size, (batch, seq_len), generator=g),
        "labels": torch.randint(2, cfg.vocab_size, (batch, seq_len), generator=g),
        "puzzle_identifiers": torch.randint(1, 1024, (batch,), generator=g),
    }
    data = {k: v.to(device) for k, v in data.items()}
    carry = model.initial_carry(data)

    def step():
        nonlocal carry
        carry, out = model(carry, data)
        loss, _ = hrm.act_loss(carry, out)
        (loss / batch).backward()
        model.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    dt = (time.perf_counter() - t0) / iters
    f = step_flops(cfg, batch)  # matmul FLOPs, counted as in hrm/flops.py (checked against FlopCounterMode)
    flops = {"block_flops": f.block, "blocks_per_forward": f.blocks_per_step, "forward": f.forward,
             "target_q_forward": f.target_q_forward, "backward": f.backward, "total": f.train}
    res = {
        "preset": preset, "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "batch": batch, "seq_len": seq_len, "compile": compile,
        "params": model.num_parameters(), "dtype": str(model.inner.compute_dtype(device)).replace("torch.", ""),
        "s_per_iter": dt, "tokens_per_s": batch * seq_len / dt, "flops_per_iter": flops, "flop_per_s": flops["total"] / dt,
    }
    if device.type == "cuda":
        name = res["device_name"]
        peak = datasheet_peak(name)
        res["peak_bf16_flop_per_s"] = peak
        res["mfu"] = flops["total"] / dt / peak if peak else None
    return res


@app.command()
def main(
    presets: str = typer.Option("tiny,arc", help="comma-separated presets"),
    device: str = typer.Option("cuda" if torch.cuda.is_available() else "cpu"),
    batch: str = typer.Option("", help="per-preset batch, e.g. 'tiny=32,arc=2' (defaults: CPU tiny 16 / arc 1; CUDA tiny 768 / arc 96)"),
    seq_len: str = typer.Option("", help="per-preset seq_len, e.g. 'arc=900' (defaults: tiny 100, arc 900)"),
    iters: int = typer.Option(0, help="timed iterations (default: 5 on CPU, 20 on CUDA)"),
    warmup: int = typer.Option(0, help="untimed iterations (default 1 on CPU, 5 on CUDA)"),
    compile: bool = typer.Option(False, help="torch.compile the inner step"),
    out: Path = typer.Option(None, help="write the results as JSON here"),
    threads: int = typer.Option(0, help="CPU threads (0 = torch default); on shared cores 1 avoids OpenMP spin contention"),
) -> None:
    """Measure forward+backward throughput (and MFU on CUDA) for each preset."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    parse = lambda s: {k: int(v) for k, v in (kv.split("=") for kv in s.split(",") if kv)}  # noqa: E731
    batches = {"tiny": 768 if cuda else 16, "arc": 96 if cuda else 1, **parse(batch)}
    seqs = {"tiny": 100, "arc": 900, **parse(seq_len)}
    iters = iters or (20 if cuda else 5)
    warmup = warmup or (5 if cuda else 1)
    results = []
    for p in [p for p in presets.split(",") if p]:
        with console.status(f"benchmarking {p} on {dev} ..."):
            results.append(bench_one(p, dev, batches[p], seqs[p], iters, warmup, compile))
    table = Table(title=f"HRM forward+backward ({dev}, {torch.get_num_threads()} threads)")
    for col in ("preset", "params", "batch x seq", "dtype", "s/iter", "tokens/s", "GFLOP/iter", "TFLOP/s", "MFU"):
        table.add_column(col)
    for r in results:
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        table.add_row(r["preset"], f"{r['params']/1e6:.2f}M", f"{r['batch']}x{r['seq_len']}", r["dtype"], f"{r['s_per_iter']:.3f}",
                      f"{r['tokens_per_s']:,.0f}", f"{r['flops_per_iter']['total']/1e9:.1f}", f"{r['flop_per_s']/1e12:.3f}", mfu)
    console.print(table)
    if out:
        out.write_text(json.dumps(results, indent=2))
        console.print(f"wrote {out}")


if __name__ == "__main__":
    app()
