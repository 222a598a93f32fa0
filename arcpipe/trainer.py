"""The training loop behind ``arcpipe.train``: one rank's steps, its sampler, resume state and
progress bar. ``arcpipe.train`` resolves the configuration and data, runs this and writes the stage.

Why it looks like this:

* **Sampling like the reference.** Every variant is its own puzzle
  identifier, and the puzzle embedding only learns rows it is shown, so the
  sampler walks a stream of epochs; each epoch visits every variant (group)
  in a fresh random order and keeps a variant's examples next to each other.
  The global batch is a contiguous slice of that stream and each rank takes
  its own contiguous part of it, so N ranks see exactly the rows one process
  would. The stream is a pure function of (seed, epoch), which makes the
  sampler's whole state one integer (the cursor) -- trivially resumable.
* **The ACT carry persists across steps.** ``hrm.HRM.forward`` replaces the
  sequences that halted with rows of the new batch and keeps thinking about
  the others, as the reference trains; the carry is therefore part of the
  resume state.
* **Gradients are all-reduced by hand** (as the reference does) rather than
  through DDP: the puzzle embedding is updated by ``hrm.SparseSignSGD``, which
  gathers its own rows across ranks, so only the dense parameters'
  gradients go through one flat ``all_reduce``.
* **Resume is exact.** Every ``checkpoint_every`` steps the full state
  (weights, both optimisers, step, sampler cursor, metrics so far, ACT carry
  and the Python/numpy/torch RNG states of every rank) is written atomically
  into the stage's work directory; rerunning the same command continues
  from it, and on CPU with ``deterministic=True`` a killed-and-resumed run
  ends with the same parameters and metrics as an uninterrupted one.
* **The host never waits on the device in a step.** A step's metrics are read
  back after the next step is queued, and the multi-rank time budget travels
  over a CPU (gloo) group.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from arcpipe import cache, launch
from arcpipe import progress as shared_progress
from arcpipe.errors import ArcpipeError, out_of_memory_as

if TYPE_CHECKING:
    from arcpipe.train import TrainConfig

#: Columns of ``metrics.parquet`` (eval columns are null on non-evaluation steps).
METRIC_COLUMNS = (
    "step", "epoch", "lm_loss", "q_halt_loss", "q_continue_loss", "accuracy", "exact_accuracy",
    "q_halt_accuracy", "steps", "halted", "lr", "tokens_per_s", "wall_s",
    "eval_train_accuracy", "eval_train_exact_accuracy", "eval_train_halt_exact_accuracy",
    "eval_holdout_accuracy", "eval_holdout_exact_accuracy", "eval_holdout_halt_exact_accuracy",
)  # fmt: skip

#: Plan columns ``materialize`` reads (the string columns stay behind when a batch is gathered).
_MATERIALIZE_COLUMNS = ("puzzle_id", "dihedral", "perm", "dr", "dc", "in_off", "in_h", "in_w", "out_off", "out_h", "out_w")

RESUME_DIR = "resume"
LATEST = "latest.json"


def make_batch(data: "_Data", rows: np.ndarray, device: Any, grids_dev: Any = None) -> dict[str, Any]:
    """Plan rows as a device batch (uint8 on the wire, long on the device; PAD labels -> -100): what
    training, its evaluation and ``train.fit_by_task`` feed the model. With ``grids_dev`` (the
    plan's grids on a CUDA device) the encoding runs there, with no per-batch host work beyond
    the row gather."""
    cols = {k: data.columns[k][rows] for k in _MATERIALIZE_COLUMNS}
    if grids_dev is not None and data.materialize_torch is not None:
        tensors = list(data.materialize_torch(cols, grids_dev, data.canvas, device=device))
    else:
        from arcpipe.augment import to_device  # pinned, non-blocking on CUDA

        tensors = [to_device(a, device) for a in data.materialize(cols, data.grids, data.canvas)]
    inp, lab, pid = (t.long() for t in tensors)
    lab = lab.masked_fill(lab == 0, -100)
    return {"inputs": inp, "labels": lab, "puzzle_identifiers": pid}

# --------------------------------------------------------------------------- sampler


class GroupSampler:
    """An endless, seeded stream of training-row indices, grouped by variant.

    ``groups[i]`` is row i's group (its puzzle identifier). Epoch ``e`` is
    every group exactly once, in the order ``permutation(seed, e)``, each
    group's rows kept together in plan order. Position ``p`` of the stream is
    row ``order(p // n)[p % n]``; a batch is ``take(cursor, size)``. Nothing
    but the cursor changes, so resuming needs only that integer.
    """

    def __init__(self, groups: np.ndarray, seed: int):
        groups = np.asarray(groups)
        if groups.size == 0:
            raise ArcpipeError("train: the dataset has no training rows")
        self.seed = int(seed)
        self.sorted_rows = np.argsort(groups, kind="stable")
        _, self.starts, self.counts = np.unique(groups[self.sorted_rows], return_index=True, return_counts=True)
        self.n = int(groups.size)
        self._cache: dict[int, np.ndarray] = {}

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Row indices of epoch ``epoch`` (vectorised: repeat each group's start, add offsets)."""
        if epoch not in self._cache:
            rng = np.random.default_rng([self.seed, 0x5A3, int(epoch)])
            perm = rng.permutation(self.counts.size)
            starts, counts = self.starts[perm], self.counts[perm]
            ends = np.cumsum(counts)
            within = np.arange(self.n) - np.repeat(ends - counts, counts)
            self._cache = {epoch: self.sorted_rows[np.repeat(starts, counts) + within]}
        return self._cache[epoch]

    def take(self, cursor: int, size: int) -> np.ndarray:
        """Rows at stream positions ``[cursor, cursor + size)`` (may span epochs)."""
        out = []
        pos, end = int(cursor), int(cursor) + int(size)
        while pos < end:
            epoch, off = divmod(pos, self.n)
            chunk = self.epoch_order(epoch)[off : off + (end - pos)]
            out.append(chunk)
            pos += chunk.size
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    #: A gloo group over the same ranks for host-side decisions (the time budget): a CPU
    #: broadcast there never waits on the GPU queue, where one over NCCL would drain it.
    host_group: Any = None

    @property
    def on(self) -> bool:
        return self.world > 1


def _init_distributed(device_type: str) -> _Dist:
    """Join the torchrun process group when there is one (gloo on CPU, NCCL on CUDA)."""
    if device_type == "cuda" and launch.world() > 1:
        import torch

        # before the first collective (train()'s opening barrier): NCCL then binds this rank's GPU
        # rather than guessing one from the global rank
        torch.cuda.set_device(launch.local_rank())
    dist, _ = launch.joined("nccl" if device_type == "cuda" else "gloo")
    if dist is None:
        return _Dist()
    host_group = dist.new_group(backend="gloo")  # collective: every rank creates it, in the same order
    return _Dist(dist.get_rank(), dist.get_world_size(), launch.local_rank(), host_group)


def _barrier(d: _Dist) -> None:
    if d.on:
        import torch.distributed as dist

        dist.barrier()

# --------------------------------------------------------------------------- data and budget


@dataclass
class _Data:
    """The training view of an augment stage: numpy columns indexed by row."""

    stage: cache.Stage
    canvas: int
    grids: np.ndarray
    columns: dict[str, np.ndarray]  # all training rows (split == "train")
    train_rows: np.ndarray  # indices into columns used for training
    holdout_rows: np.ndarray  # indices held out for evaluation (empty unless holdout)
    num_puzzle_identifiers: int
    materialize: Callable
    materialize_torch: Callable | None = None


def total_steps_for(tc: TrainConfig, n_rows: int) -> int | None:
    """The step budget: ``max_steps`` and/or ``epochs`` over ``n_rows`` training rows (None if time-only)."""
    budgets = []
    if tc.max_steps is not None:
        budgets.append(int(tc.max_steps))
    if tc.epochs is not None:
        budgets.append(max(1, math.ceil(tc.epochs * n_rows / tc.global_batch_size)))
    return min(budgets) if budgets else None

# --------------------------------------------------------------------------- helpers


@contextmanager
def _determinism(on: bool, device_type: str) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the run; restores the previous settings."""
    import torch

    if not on:
        yield
        return
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    if device_type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def _rng_state() -> dict[str, Any]:
    import torch

    # numpy's key array travels as a tensor: resume files load with weights_only=True (no pickled objects)
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])

# --------------------------------------------------------------------------- trainer


#: The most training rows a run's final fit (``_Trainer.final_fit``) is read on: every row of the CPU
#: ablations' sets (1784 on the 59-task set), a draw of them at paper scale (~1M rows).
FIT_ROWS = 65536
#: Rows a forward pass when reading it (the training batch if larger): no gradients are kept.
FIT_BATCH = 512


class _Trainer:
    """One rank's training loop. All ranks run the same steps; rank 0 writes."""

    def __init__(self, data: _Data, model_cfg: Any, tc: TrainConfig, d: _Dist, work: Path,
                 resume: bool, progress: bool, callback: Callable[[int, dict], None] | None):  # fmt: skip
        import torch

        import hrm

        self.data, self.model_cfg, self.tc, self.d, self.work = data, model_cfg, tc, d, work
        self.progress, self.callback = progress, callback
        if tc.global_batch_size % d.world:
            raise ArcpipeError(
                f"train: global batch size {tc.global_batch_size} is not divisible by the {d.world} ranks; "
                "change --batch-size or --nproc-per-node"
            )
        self.local_bs = tc.global_batch_size // d.world
        if tc.device == "cuda":
            torch.cuda.set_device(d.local_rank)
            self.device = torch.device("cuda", d.local_rank)
        else:
            self.device = torch.device("cpu")
        self._grids_dev = None
        self.sampler = GroupSampler(data.columns["puzzle_id"][data.train_rows], tc.seed)
        self.total_steps = total_steps_for(tc, int(data.train_rows.size))

        # Same init on every rank (then broadcast, as the reference does, in case a kernel differs).
        random.seed(tc.seed)
        np.random.seed(tc.seed % 2**32)
        torch.manual_seed(tc.seed)
        with self.device:
            self.model = hrm.HRM(model_cfg, compile=tc.compile)
        self.model.to(self.device)
        if d.on:
            import torch.distributed as dist

            with torch.no_grad():
                for t in self.model.state_dict().values():
                    dist.broadcast(t, src=0)
        # Per-rank stream for the model's own randomness (ACT halting exploration).
        torch.manual_seed(tc.seed + d.rank)

        emb = getattr(self.model, "puzzle_emb", None)
        emb_params = {id(p) for p in emb.parameters()} if emb is not None else set()
        self.dense = [p for p in self.model.parameters() if p.requires_grad and id(p) not in emb_params]
        self.opt = hrm.AdamAtan2(self.dense, lr=tc.lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
        self.sparse_opt = (
            hrm.SparseSignSGD(emb, lr=tc.puzzle_emb_lr, weight_decay=tc.puzzle_emb_weight_decay)
            if emb is not None and model_cfg.puzzle_emb_ndim > 0
            else None
        )

        # TRM-style weight averaging when the model config asks for it (ema_decay > 0): evaluation
        # and the final model.pt use the averaged weights, training updates the live ones.
        ema_decay = float(getattr(model_cfg, "ema_decay", 0.0) or 0.0)
        self.ema = hrm.EMA(self.model, decay=ema_decay) if ema_decay > 0 else None

        self.step = 0
        self.cursor = 0
        self.carry = None
        self.rows: list[dict[str, Any]] = []
        self.wall_offset = 0.0  # training seconds spent before the last resume

        rng = np.random.default_rng([tc.seed, 0xE7A1])
        n_eval = min(tc.eval_size, int(data.train_rows.size))
        self.eval_train = np.sort(rng.choice(data.train_rows, size=n_eval, replace=False))
        n_hold = min(tc.eval_size, int(data.holdout_rows.size))
        self.eval_holdout = np.sort(rng.choice(data.holdout_rows, size=n_hold, replace=False)) if n_hold else data.holdout_rows

        self.resume_dir = work / RESUME_DIR
        if resume:
            self._load_resume()
        elif d.rank == 0 and self.resume_dir.exists():
            shutil.rmtree(self.resume_dir)
        _barrier(d)

    # ----------------------------------------------------------------- batches

    def _batch(self, rows: np.ndarray) -> dict[str, Any]:
        """Materialise plan rows into a device batch (the encoding grids kept on a CUDA device once)."""
        import torch

        if self.device.type == "cuda" and self.data.materialize_torch is not None and self._grids_dev is None:
            self._grids_dev = torch.as_tensor(np.asarray(self.data.grids), device=self.device)
        return make_batch(self.data, rows, self.device, self._grids_dev)

    def _local_rows(self, cursor: int) -> np.ndarray:
        glob = self.sampler.take(cursor, self.tc.global_batch_size)
        return self.data.train_rows[glob[self.d.rank * self.local_bs : (self.d.rank + 1) * self.local_bs]]

    # ----------------------------------------------------------------- steps

    def lr_scale(self, step: int) -> float:
        """The schedule's factor for ``step`` (1-based), via hrm.lr_at on a base LR of 1."""
        import hrm

        tc = self.tc
        if self.total_steps is None:  # time budget only: warmup, then flat
            return float(hrm.lr_at(step, 1.0, tc.warmup_steps, max(step, tc.warmup_steps, 1), 1.0))
        return float(hrm.lr_at(step, 1.0, tc.warmup_steps, self.total_steps, tc.lr_min_ratio))

    def train_step(self) -> "_StepMetrics":
        """Queue one optimiser step on the next global batch; returns its metrics still on the
        device (all-reduced), so the host need not wait for the step: :meth:`_read` fetches them."""
        import torch

        import hrm

        tc, d = self.tc, self.d
        batch = self._batch(self._local_rows(self.cursor))
        self.cursor += tc.global_batch_size
        if self.carry is None:
            with self.device:
                self.carry = self.model.initial_carry(batch)
        self.model.train()
        self.carry, outputs = self.model(self.carry, batch)
        loss, metrics = hrm.act_loss(self.carry, outputs)
        (loss / tc.global_batch_size).backward()
        if d.on:
            self._all_reduce_grads()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.dense, tc.grad_clip)
        scale = self.lr_scale(self.step + 1)
        for group in self.opt.param_groups:
            group["lr"] = tc.lr * scale
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.sparse_opt is not None:
            for group in self.sparse_opt.param_groups:
                group["lr"] = tc.puzzle_emb_lr * scale
            self.sparse_opt.step()
            self.sparse_opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return _StepMetrics(self.step, self.cursor, tc.lr * scale, *self._reduce_metrics(metrics))

    def _all_reduce_grads(self) -> None:
        """Sum dense gradients over ranks with one flat collective (the loss is already / global batch)."""
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.dense]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        off = 0
        for p in self.dense:
            n = p.numel()
            p.grad = flat[off : off + n].view_as(p)
            off += n

    def _reduce_metrics(self, metrics: dict[str, Any]) -> tuple[list[str], Any]:
        """Stack the summed metrics into one device vector and all-reduce it (queued, no host wait)."""
        import torch

        keys = sorted(metrics)
        vec = torch.stack([torch.as_tensor(metrics[k], dtype=torch.float64, device=self.device).detach().reshape(()) for k in keys])
        if self.d.on:
            import torch.distributed as dist

            dist.all_reduce(vec)
        return keys, vec

    def _read(self, m: "_StepMetrics") -> dict[str, float]:
        """The step's metrics on the host (waits for that step only); losses are per
        global-batch sequence, the rest per halted sequence."""
        vals = dict(zip(m.keys, m.vec.cpu().tolist()))
        count = vals.pop("count", float(self.tc.global_batch_size))
        out: dict[str, float] = {"halted": count}
        for k, v in vals.items():
            if k.endswith("loss"):
                out[k] = v / self.tc.global_batch_size
            else:
                out[k] = v / count if count > 0 else float("nan")
        out["lr"] = m.lr
        return out

    # ----------------------------------------------------------------- evaluation

    def evaluate(self, rows: np.ndarray, batch_size: int | None = None) -> dict[str, float]:
        """Accuracy of a full rollout on ``rows``, sharded over ranks, ``batch_size`` rows a forward
        pass on each (the training batch unless given).

        ``accuracy``/``exact_accuracy`` read the last ACT step (the reference's
        evaluation: every sequence runs ``halt_max_steps`` steps);
        ``halt_exact_accuracy`` reads the step the Q head would have halted at
        (first step with q_halt > q_continue, else the last), which is what the
        model answers when it is allowed to stop early. The two differ while
        later steps are still under-trained.
        """
        import torch

        if rows.size == 0:
            return {}
        self.model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # right tokens, tokens, exact, exact at halt
        size = batch_size or self.local_bs
        chunks = [rows[i : i + size] for i in range(0, rows.size, size)]
        with torch.no_grad():
            for chunk in chunks[self.d.rank :: self.d.world]:
                batch = self._batch(chunk)
                out = self.model.rollout(batch)
                labels = batch["labels"]
                mask = labels != -100
                n_valid = mask.sum(-1)
                right = (out["preds"] == labels) & mask  # (S, B, L)
                exact = right.sum(-1) == n_valid  # (S, B)
                halts = out["q_halt"] > out["q_continue"]
                halts[-1] = True
                at = halts.to(torch.int8).argmax(0)  # first halting step per sequence
                sums[0] += right[-1].sum()
                sums[1] += mask.sum()
                sums[2] += exact[-1].sum()
                sums[3] += exact.gather(0, at[None]).sum()
        self.model.train()
        if self.d.on:
            import torch.distributed as dist

            dist.all_reduce(sums)
        c, t, e, eh = sums.cpu().tolist()
        return {"accuracy": c / max(t, 1.0), "exact_accuracy": e / rows.size, "halt_exact_accuracy": eh / rows.size}

    def fit_rows(self) -> np.ndarray:
        """The training rows a run's final fit is read on: all of them up to ``FIT_ROWS``, else that
        many drawn with the training seed. The eval_size rows sampled during training make a noisy
        fit (128 rows: a binomial SD of about 4 points), too noisy to tell one seed's fit from
        another's; reading every row of a CPU-sized set costs seconds, once, after the last step."""
        rows = self.data.train_rows
        if rows.size <= FIT_ROWS:
            return rows
        return np.sort(np.random.default_rng([self.tc.seed, 0xF1757]).choice(rows, size=FIT_ROWS, replace=False))

    def final_fit(self) -> dict[str, float]:
        """``fit_exact``: the share of ``fit_rows`` the published weights reproduce exactly after the
        last ACT step, and ``fit_rows``, their number. Collective over ranks, like ``evaluate``;
        nothing here changes the weights or any random state training used."""
        rows = self.fit_rows()
        with self.final_weights():
            out = self.evaluate(rows, batch_size=max(self.local_bs, FIT_BATCH))
        return {"fit_exact": out.get("exact_accuracy"), "fit_rows": int(rows.size)}

    def _eval_columns(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self.final_weights():
            for name, rows in (("train", self.eval_train), ("holdout", self.eval_holdout)):
                out.update({f"eval_{name}_{k}": v for k, v in self.evaluate(rows).items()})
        return out

    def final_state_dict(self) -> dict[str, Any]:
        """The weights this run publishes: the EMA average when there is one, else the live weights."""
        return self.ema.averaged_state_dict(self.model) if self.ema is not None else self.model.state_dict()

    @contextmanager
    def final_weights(self) -> Iterator[None]:
        """Temporarily load the published (EMA) weights, restoring the live ones afterwards."""
        import torch

        if self.ema is None:
            yield
            return
        live = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        with torch.no_grad():
            self.model.load_state_dict(self.ema.averaged_state_dict(self.model))
        try:
            yield
        finally:
            with torch.no_grad():
                self.model.load_state_dict(live)

    # ----------------------------------------------------------------- resume state

    def _save_resume(self) -> None:
        """Write this step's full state: rank files, then (after a barrier) rank 0 flips ``latest.json``."""
        import torch

        step_dir = self.resume_dir / f"step-{self.step:09d}"
        step_dir.mkdir(parents=True, exist_ok=True)
        carry = None if self.carry is None else {f.name: getattr(self.carry, f.name) for f in dataclasses.fields(self.carry)}
        mine = {"step": self.step, "rng": _rng_state(), "carry": carry}
        with cache.atomic_path(step_dir / f"rank{self.d.rank}.pt") as tmp:
            torch.save(mine, tmp)
        if self.d.rank == 0:
            shared = {
                "step": self.step,
                "cursor": self.cursor,
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "sparse_opt": self.sparse_opt.state_dict() if self.sparse_opt is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rows": self.rows,
                "wall_s": self.wall_offset + (time.perf_counter() - self.t_start),
            }
            with cache.atomic_path(step_dir / "state.pt") as tmp:
                torch.save(shared, tmp)
        _barrier(self.d)
        if self.d.rank == 0:
            cache.atomic_write_json(self.resume_dir / LATEST, {"step": self.step, "world_size": self.d.world, "dir": step_dir.name})
            for old in self.resume_dir.glob("step-*"):
                if old.name != step_dir.name:
                    shutil.rmtree(old, ignore_errors=True)
        _barrier(self.d)

    def _load_resume(self) -> None:
        import torch

        import hrm

        latest = self.resume_dir / LATEST
        if not latest.is_file():
            return
        info = json.loads(latest.read_text())
        step_dir = self.resume_dir / info["dir"]
        # weights_only=True even for our own files: a cache dir may be copied from anywhere.
        shared = torch.load(step_dir / "state.pt", map_location=self.device, weights_only=True)
        self.model.load_state_dict(shared["model"])
        self.opt.load_state_dict(shared["opt"])
        if self.sparse_opt is not None and shared["sparse_opt"] is not None:
            self.sparse_opt.load_state_dict(shared["sparse_opt"])
        if self.ema is not None and shared.get("ema") is not None:
            self.ema.load_state_dict(shared["ema"])
        self.step, self.cursor = int(shared["step"]), int(shared["cursor"])
        self.rows = list(shared["rows"])
        self.wall_offset = float(shared["wall_s"])
        mine_path = step_dir / f"rank{self.d.rank}.pt"
        if int(info.get("world_size", 1)) == self.d.world and mine_path.is_file():
            mine = torch.load(mine_path, map_location=self.device, weights_only=True)
            _set_rng_state(mine["rng"])
            self.carry = None if mine["carry"] is None else hrm.Carry(**mine["carry"])
            self.resumed_exactly = True
        else:  # a different number of ranks: weights and schedule carry over, the ACT carry restarts
            self.carry = None
            self.resumed_exactly = False
        self.resumed_from = self.step

    # ----------------------------------------------------------------- loop

    def run(self) -> dict[str, Any]:
        """Train to the budget; a GPU out-of-memory becomes a one-line error naming the knob."""
        oom = (f"train: out of memory at global batch {self.tc.global_batch_size} ({self.local_bs} per rank) "
               f"on {self.device.type}; lower --batch-size (or the model size, e.g. --set hidden_size=...)")
        with out_of_memory_as(oom):
            return self._run()

    def _run(self) -> dict[str, Any]:
        tc, d = self.tc, self.d
        self.t_start = time.perf_counter()
        deadline = tc.max_minutes * 60.0 if tc.max_minutes is not None else None
        bar = _Progress(self.total_steps, self.step, enabled=self.progress and d.rank == 0)
        # Step k's metrics are read back after step k+1 is queued, so the host never waits for
        # the step it has just launched and the GPU never idles while the host prepares the
        # next batch. Steps that evaluate or checkpoint are read at once (they need the state).
        pending: _StepMetrics | None = None
        self._first_step = self.step
        with bar:
            while self.total_steps is None or self.step < self.total_steps:
                if deadline is not None and self._out_of_time(deadline):
                    break
                m = self.train_step()
                if pending is not None:
                    self._record(pending, bar)
                pending = m
                final = self.total_steps is not None and self.step >= self.total_steps
                evaluate = self.step % tc.eval_every == 0 or final
                checkpoint = self.step % tc.checkpoint_every == 0 and not final
                if evaluate or checkpoint:
                    self._record(pending, bar, evaluate=evaluate, checkpoint=checkpoint)
                    pending = None
            if pending is not None:
                self._record(pending, bar)
        if self.rows and self.rows[-1]["eval_train_exact_accuracy"] is None:  # stopped by the clock
            self.rows[-1].update(self._eval_columns())
        return {"steps": self.step, "world_size": d.world}

    def _record(self, m: "_StepMetrics", bar: "_Progress", evaluate: bool = False, checkpoint: bool = False) -> None:
        """Read step ``m``'s metrics back and append its row (evaluating / checkpointing first
        if asked: both see the weights right after that step, which is the latest one)."""
        tc = self.tc
        vals = self._read(m)
        now = time.perf_counter()
        row = {c: None for c in METRIC_COLUMNS}
        row.update({k: v for k, v in vals.items() if k in METRIC_COLUMNS})
        row["step"] = m.step
        row["epoch"] = m.cursor / self.sampler.n
        # Mean throughput since this process started training: rows are read up to one step
        # behind the GPU, so a per-row interval would mis-attribute time; the mean does not
        # (self.step counts the steps queued, at most one ahead of those finished).
        row["tokens_per_s"] = (self.step - self._first_step) * tc.global_batch_size * self.model_cfg.seq_len / max(now - self.t_start, 1e-9)
        row["wall_s"] = self.wall_offset + (now - self.t_start)
        if evaluate:
            row.update(self._eval_columns())
        self.rows.append(row)
        bar.update(m.step, row)
        if checkpoint:
            self._save_resume()
        if self.callback is not None and self.d.rank == 0:
            self.callback(m.step, row)

    def _out_of_time(self, deadline: float) -> bool:
        """Rank 0's clock decides for everyone, so all ranks stop on the same step. The flag
        travels as a CPU tensor over the host (gloo) group: a device broadcast + ``.item()``
        here would wait for every queued step and undo the one-step-late metric reads."""
        import torch

        elapsed = self.wall_offset + (time.perf_counter() - self.t_start)
        if not self.d.on:  # one process: the host clock alone
            return elapsed >= deadline
        import torch.distributed as dist

        flag = torch.tensor([1 if elapsed >= deadline else 0], dtype=torch.int32)
        dist.broadcast(flag, src=0, group=self.d.host_group)
        return bool(flag.item())


@dataclass
class _StepMetrics:
    """One step's metrics as queued on the device (``vec`` holds ``keys``' sums)."""

    step: int
    cursor: int
    lr: float
    keys: list[str]
    vec: Any


class _Progress:
    """A rich progress bar with live loss/accuracy and ETA; a no-op when disabled (other ranks, tests).

    Off a terminal (a log file: ``nohup``, ``arcpipe run --jobs``) a bar draws only when it ends,
    so there it also prints a plain line every ``every_s`` seconds: a log to ``tail -f``."""

    every_s = 30.0

    def __init__(self, total: int | None, start: int, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        self.total, self.t0 = total, time.monotonic()
        self.last_line = self.t0
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.p.add_task("train", total=total, completed=start, stats="")
        shared_progress.report(start, total)

    def __enter__(self) -> "_Progress":
        if self.enabled:
            self.p.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.p.__exit__(*exc)

    def update(self, step: int, row: dict) -> None:
        if not self.enabled:
            return
        fmt = lambda v: "  -  " if v is None or v != v else f"{v:.3f}"  # noqa: E731
        stats = f"loss {fmt(row['lm_loss'])} acc {fmt(row['accuracy'])} exact {fmt(row['exact_accuracy'])}"
        if row.get("eval_train_exact_accuracy") is not None:
            stats += f" | eval exact {fmt(row['eval_train_exact_accuracy'])}"
        self.p.update(self.task, completed=step, stats=stats)
        shared_progress.report(step, self.total)
        now = time.monotonic()
        if not self.p.console.is_terminal and now - self.last_line >= self.every_s:
            self.last_line = now
            of = f"/{self.total}" if self.total else ""
            self.p.console.print(f"train step {step}{of} {stats} ({now - self.t0:.0f} s)", highlight=False, markup=False)
