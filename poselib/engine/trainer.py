"""The one training loop every method uses.

A method supplies a model, a data set and ``step_fn(model, batch) -> (loss, logs)``; :class:`Trainer` does the
rest: device placement, the data loader (seeded shuffling, resumable mid-epoch), optimiser and schedule, AMP and
gradient clipping, DDP, progress bars, the JSONL metrics log, atomic checkpoints with exact resume, and
``final.pt`` so a finished run is never trained again.

Files in ``out_dir``:

- ``last.pt``: everything needed to continue exactly (model, optimiser, schedule, GradScaler, epoch, step within
  the epoch, global step, RNG states of every rank, config); written every ``checkpoint_every`` steps and at
  every epoch end.
- ``metrics.jsonl``: one JSON object per logged step (``kind="train"``, ``step``, ``epoch``, ``lr``, ``loss``,
  the step's logs, ``time`` in seconds since training began) and one per validation (``kind="val"``).
  ``step`` counts optimiser steps taken (1-based) and ``epoch`` is 0-based.
- ``final.pt``: the trained model's state, the config, the final metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TextIO

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from poselib.progress import progress_disabled

from poselib.engine import distributed as dist_utils
from poselib.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    write_text_atomic,
)
from poselib.engine.schedules import OPTIMIZERS, SCHEDULES, LRSchedule, build_optimizer
from poselib.presets import resolve_device

StepFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, Mapping[str, float]]"]
ValFn = Callable[[nn.Module], Mapping[str, float]]

#: Config fields that may change between an interrupted run and its resumption (they do not change the result).
RUN_CONTROL_FIELDS: frozenset[str] = frozenset(
    {"num_workers", "log_every", "checkpoint_every", "device", "progress", "deterministic"}
)
_RESERVED_LOG_KEYS = frozenset({"kind", "step", "epoch", "lr", "loss", "time"})


@dataclass
class TrainConfig:
    """How to train. ``batch_size`` is per process (under DDP the global batch is ``world_size`` times larger).

    Schedules (see :func:`poselib.engine.schedules.lr_factor`): ``"constant"``; ``"step"`` multiplies the lr by
    ``gamma`` at each epoch in ``milestones``; ``"plateau"`` multiplies it by ``factor`` when the validation metric
    ``plateau_metric`` has not improved (``mode`` "max" or "min") for ``patience`` epochs; ``"warmup_linear"``
    warms up linearly over ``warmup_steps`` optimiser steps then decays linearly to zero at the end;
    ``"warmup_step"`` warms up then follows ``"step"``.

    ``amp`` (float16 autocast with a GradScaler) only takes effect on CUDA; ``channels_last`` (NHWC memory format
    for the model and 4-D batches) on any device, since it also speeds up convolutions on the CPU. ``log_every`` and
    ``checkpoint_every`` count optimiser steps (``checkpoint_every=None``: only at epoch ends). ``max_steps`` caps
    the run (smoke runs, tests); the schedule is laid out over the capped length. Runs on the CPU are
    deterministic for a seed; ``deterministic=True`` also makes torch use deterministic CUDA kernels (slower; a
    process-wide switch, as in torchvision's reference scripts).
    """

    epochs: int = 10
    batch_size: int = 32
    num_workers: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    plateau_metric: str | None = None
    mode: str = "max"
    patience: int = 2
    factor: float = 0.1
    warmup_steps: int = 0
    grad_clip: float | None = None
    amp: bool = False
    channels_last: bool = False
    log_every: int = 20
    checkpoint_every: int | None = 500
    seed: int = 0
    max_steps: int | None = None
    device: str = "auto"
    progress: bool = True
    deterministic: bool = False
    shuffle: bool = True  # False: every epoch in the data set's order (curricula)

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1")
        for name in ("checkpoint_every", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be at least 1 (or None)")
        if self.num_workers < 0 or self.warmup_steps < 0:
            problems.append("num_workers and warmup_steps must not be negative")
        if self.lr <= 0:
            problems.append(f"lr={self.lr} must be positive")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"grad_clip={self.grad_clip} must be positive (or None)")
        if self.schedule == "plateau":
            if not self.plateau_metric:
                problems.append("schedule 'plateau' needs plateau_metric (a key returned by val_fn)")
            if self.mode not in ("max", "min"):
                problems.append(f"mode {self.mode!r} must be 'max' or 'min'")
        if self.warmup_steps and self.schedule not in ("warmup_linear", "warmup_step"):
            problems.append(f"warmup_steps={self.warmup_steps} is only used by warmup_linear and warmup_step")
        if self.schedule in ("warmup_linear", "warmup_step") and self.warmup_steps < 1:
            problems.append(f"schedule {self.schedule!r} needs warmup_steps >= 1")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(sorted(unknown))}")
        return cls(**fields)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns. ``model`` is the trained model in eval mode (unwrapped from DDP).

    ``metrics``: ``loss`` (mean training loss over the last epoch) and the last validation metrics.
    ``steps``: optimiser steps taken. ``wall_time_s``: training seconds summed over all sessions of the run.
    ``finished``: False when stopped early by ``stop_after_steps``. ``cached``: True when loaded from ``final.pt``.
    """

    model: nn.Module
    metrics: dict[str, float]
    steps: int
    epochs: int
    wall_time_s: float
    log_path: Path
    out_dir: Path
    finished: bool = True
    cached: bool = False


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. ``step`` is 1-based, ``epoch`` 0-based; the last good checkpoint is kept."""

    def __init__(self, message: str, *, step: int, epoch: int, loss: float, logs: Mapping[str, float]):
        super().__init__(message)
        self.step, self.epoch, self.loss, self.logs = step, epoch, loss, dict(logs)


# ---------------------------------------------------------------------------------------------------------------
# data plumbing


def _derived_seed(*values: int) -> int:
    """A 63-bit seed mixing ``values``; unlike ``seed + epoch`` it never repeats across (seed, epoch) pairs."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


class EpochSampler(DistributedSampler):
    """A ``DistributedSampler`` whose shuffle is seeded from ``(seed, epoch)`` and which can start mid-epoch.

    Every world size shares one permutation per epoch, rank ``r`` taking positions ``r, r + R, r + 2R, ...``
    (``R`` processes), so batch ``j`` of all ranks together is batch ``j`` of a single process with an ``R``
    times larger batch. The tail that does not divide evenly among ranks is dropped.
    :meth:`set_range` restricts an epoch to this rank's samples ``[start, stop)`` (resuming).
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start, self.stop = 0, self.num_samples

    def set_range(self, start: int, stop: int | None = None) -> None:
        """Yield only this rank's samples ``[start, stop)`` of the epoch (indices into its share)."""
        self.start, self.stop = start, self.num_samples if stop is None else min(stop, self.num_samples)

    def __iter__(self) -> Iterator[int]:
        size = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            generator = torch.Generator().manual_seed(_derived_seed(self.seed, self.epoch))
            order = torch.randperm(size, generator=generator).tolist()
        else:
            order = list(range(size))
        mine = order[self.rank : self.total_size : self.num_replicas]
        return iter(mine[self.start : self.stop])

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _seed_rngs(seed: int) -> None:
    # Not presets.seed_everything: that also flips torch's process-wide deterministic-kernels switch, which is
    # the config's `deterministic` choice here.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int, *, seed: int, epoch: int, rank: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python, numpy and torch in each worker from (seed, epoch, rank, worker)."""
    worker_seed = _derived_seed(seed, epoch, rank, worker_id)
    random.seed(worker_seed)
    np.random.seed(worker_seed % 2**32)
    torch.manual_seed(worker_seed)


def move_to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """``batch`` with every tensor (inside nested dicts, lists and tuples) moved to ``device``; other values kept.

    With ``channels_last``, 4-D floating tensors (``(N, C, H, W)`` images and maps) get that memory format.
    """
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device, channels_last) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device, channels_last) for v in batch)
    return batch


# ---------------------------------------------------------------------------------------------------------------
# metrics log


def read_metrics_log(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The objects of a ``metrics.jsonl`` (only ``kind`` "train" or "val" when given); a torn last line is skipped."""
    out = []
    path = Path(path)
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or obj.get("kind") == kind:
            out.append(obj)
    return out


def truncate_metrics_log(path: str | Path, last_step: int) -> None:
    """Keep only entries with ``step <= last_step`` (atomically), so a resumed run logs no duplicates."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [json.dumps(obj) for obj in read_metrics_log(path) if obj.get("step", 0) <= last_step]
    write_text_atomic(path, "".join(line + "\n" for line in kept))


# ---------------------------------------------------------------------------------------------------------------
# the trainer


@dataclass
class _Position:
    """Where training stands; saved in ``last.pt``."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    elapsed_s: float = 0.0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    val_metrics: dict[str, float] = field(default_factory=dict)


def _config_differences(saved: Mapping[str, Any], current: TrainConfig) -> list[str]:
    # A field the saved config lacks (added to TrainConfig since) counts as its default.
    defaults = TrainConfig().to_dict()
    now = current.to_dict()
    return [
        f"{k}: {saved.get(k, defaults[k])!r} -> {now[k]!r}"
        for k in sorted(now)
        if k not in RUN_CONTROL_FIELDS and saved.get(k, defaults[k]) != now[k]
    ]


def _floats(logs: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v.detach().float().item() if isinstance(v, torch.Tensor) else v) for k, v in logs.items()}


class Trainer:
    """Trains any model with :attr:`config`, writing logs and checkpoints to ``out_dir`` (see the module doc)."""

    def __init__(self, config: TrainConfig, out_dir: str | Path):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.out_dir = Path(out_dir)

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def final_path(self) -> Path:
        return self.out_dir / "final.pt"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    def fit(
        self,
        model: nn.Module,
        train_set: Dataset,
        step_fn: StepFn,
        *,
        collate_fn: Callable | None = None,
        val_fn: ValFn | None = None,
        resume: bool = True,
        stop_after_steps: int | None = None,
    ) -> TrainResult:
        """Train ``model`` on ``train_set``, or load the finished run from ``out_dir/final.pt``.

        Args:
            model: built by the caller; moved to the config's device and trained in place.
            train_set: a map-style data set; its ``set_epoch(epoch)`` is called before each epoch when it has one.
                For exact resumption its randomness must derive from ``(seed, epoch, index)``.
            step_fn: ``step_fn(model, batch) -> (loss, logs)``: ``loss`` a scalar tensor to minimise, ``logs`` a
                dict of floats to log. ``batch`` is already on the device. Under DDP ``model`` is the DDP wrapper:
                call ``model(...)`` so gradients are synchronised (``distributed.unwrap_model`` reaches the module).
            collate_fn: the DataLoader's (default: torch's default collation).
            val_fn: ``val_fn(model) -> metrics`` at each epoch end, with the unwrapped model in eval mode under
                ``torch.no_grad()``. Under DDP every rank calls it and rank 0's metrics are used.
            resume: continue from ``last.pt`` (or return ``final.pt``) when present; False starts over and deletes
                the folder's previous checkpoints and log.
            stop_after_steps: save a checkpoint and return (``finished=False``) once this many steps are done.

        Raises:
            TrainingDiverged: the loss became NaN or infinite (``last.pt`` keeps the last good state).
            ValueError: the folder's checkpoint was made with a different config.
        """
        cfg = self.config
        device = resolve_device(cfg.device)
        rank, world_size, local_rank = dist_utils.init_distributed("nccl" if device.type == "cuda" else "gloo")
        is_main = rank == 0
        if device.type == "cuda" and world_size > 1:
            device = torch.device("cuda", local_rank)
        if resume and self.final_path.is_file():
            return self._load_final(model, device)
        if cfg.schedule == "plateau" and val_fn is None:
            raise ValueError(f"schedule 'plateau' watches {cfg.plateau_metric!r} but fit() got no val_fn")
        if is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not resume:
                for stale in (self.last_path, self.final_path, self.log_path):
                    stale.unlink(missing_ok=True)
        dist_utils.barrier()

        batches_per_epoch = len(EpochSampler(train_set, num_replicas=world_size, rank=rank)) // cfg.batch_size
        if batches_per_epoch == 0:
            raise ValueError(
                f"the training set has {len(train_set)} samples: too few for one batch of "  # type: ignore[arg-type]
                f"{cfg.batch_size} per process on {world_size} process(es)"
            )
        total_steps = cfg.epochs * batches_per_epoch
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)

        _seed_rngs(cfg.seed + rank)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        amp = cfg.amp and device.type == "cuda"
        channels_last = cfg.channels_last
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model.parameters(), cfg)
        schedule = LRSchedule(optimizer, cfg, batches_per_epoch, total_steps)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)

        position = _Position()
        if resume and self.last_path.is_file():
            position = self._load_last(model, optimizer, schedule, scaler, rank, world_size)
            if is_main:
                truncate_metrics_log(self.log_path, position.global_step)
        elif is_main:
            self.log_path.unlink(missing_ok=True)
        dist_utils.barrier()

        train_model: nn.Module = model
        if world_size > 1:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        context = _RunContext(
            trainer=self, model=model, train_model=train_model, optimizer=optimizer, schedule=schedule,
            scaler=scaler, position=position, device=device, amp=amp, channels_last=channels_last, rank=rank,
            world_size=world_size, batches_per_epoch=batches_per_epoch, total_steps=total_steps,
        )  # fmt: skip
        log_file = open(self.log_path, "a") if is_main else None
        try:
            stopped = context.run(train_set, step_fn, collate_fn, val_fn, stop_after_steps, log_file)
        finally:
            if log_file is not None:
                log_file.close()
        model.eval()
        position.elapsed_s = context.elapsed()
        metrics = context.final_metrics()
        if not stopped and is_main:
            save_checkpoint(
                self.final_path,
                {
                    "format": 1,
                    "model": model.state_dict(),
                    "config": cfg.to_dict(),
                    "metrics": metrics,
                    "global_step": position.global_step,
                    "epochs": position.epoch,
                    "elapsed_s": position.elapsed_s,
                },
            )
        dist_utils.barrier()
        return TrainResult(
            model=model, metrics=metrics, steps=position.global_step, epochs=position.epoch,
            wall_time_s=position.elapsed_s, log_path=self.log_path, out_dir=self.out_dir, finished=not stopped,
        )  # fmt: skip

    def _check_config(self, saved: Mapping[str, Any], path: Path) -> None:
        differences = _config_differences(saved, self.config)
        if differences:
            raise ValueError(
                f"{path} was written with a different TrainConfig ({'; '.join(differences)}); "
                "use another out_dir, or fit(..., resume=False) to start over"
            )

    def _load_final(self, model: nn.Module, device: torch.device) -> TrainResult:
        state = load_checkpoint(self.final_path)
        self._check_config(state["config"], self.final_path)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise RuntimeError(f"{self.final_path} does not fit the given model: {err}") from err
        model.to(device).eval()
        return TrainResult(
            model=model, metrics=dict(state["metrics"]), steps=int(state["global_step"]), epochs=int(state["epochs"]),
            wall_time_s=float(state["elapsed_s"]), log_path=self.log_path, out_dir=self.out_dir, finished=True,
            cached=True,
        )  # fmt: skip

    def _load_last(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        scaler: torch.amp.GradScaler,
        rank: int,
        world_size: int,
    ) -> _Position:
        state = load_checkpoint(self.last_path)
        self._check_config(state["config"], self.last_path)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise RuntimeError(f"{self.last_path} does not fit the given model: {err}") from err
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        if scaler.is_enabled() and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rng_states = state["rng"]
        # Another world size cannot be resumed bit-exactly anyway; give every rank a defined state.
        restore_rng_state(rng_states[rank] if len(rng_states) == world_size else rng_states[0])
        return _Position(**state["position"])


@dataclass
class _RunContext:
    """The state of one ``fit`` call, so the loop reads as a few short methods."""

    trainer: Trainer
    model: nn.Module  # the module itself
    train_model: nn.Module  # what step_fn gets: the module, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    position: _Position
    device: torch.device
    amp: bool
    channels_last: bool
    rank: int
    world_size: int
    batches_per_epoch: int
    total_steps: int

    def __post_init__(self) -> None:
        self.config = self.trainer.config
        self.is_main = self.rank == 0
        self.session_start = time.perf_counter()
        self.elapsed_before = self.position.elapsed_s
        self.last_saved_step: int | None = self.position.global_step if self.position.global_step else None

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start

    def final_metrics(self) -> dict[str, float]:
        p = self.position
        loss = p.epoch_loss_sum / p.epoch_loss_count if p.epoch_loss_count else float("nan")
        return {"loss": loss, **p.val_metrics}

    def run(
        self,
        train_set: Dataset,
        step_fn: StepFn,
        collate_fn: Callable | None,
        val_fn: ValFn | None,
        stop_after_steps: int | None,
        log_file: TextIO | None,
    ) -> bool:
        """Train to the end; True when stopped early by ``stop_after_steps``."""
        cfg, p = self.config, self.position
        while p.epoch < cfg.epochs:
            if p.step_in_epoch == 0 and p.global_step >= self.total_steps:
                break
            if p.step_in_epoch == 0:
                p.epoch_loss_sum, p.epoch_loss_count = 0.0, 0
            epoch_stop = min(self.batches_per_epoch, p.step_in_epoch + self.total_steps - p.global_step)
            loader = self._loader(train_set, collate_fn, p.epoch, p.step_in_epoch, epoch_stop)
            self.train_model.train()
            with tqdm(
                total=self.batches_per_epoch,
                initial=p.step_in_epoch,
                desc=f"epoch {p.epoch + 1}/{cfg.epochs}",
                disable=progress_disabled(cfg.progress and self.is_main),
                dynamic_ncols=True,
                leave=False,
            ) as bar:
                for batch in loader:
                    self._train_step(batch, step_fn, log_file)
                    bar.update(1)
                    bar.set_postfix(loss=f"{p.epoch_loss_sum / p.epoch_loss_count:.4g}", refresh=False)
                    if stop_after_steps is not None and p.global_step >= stop_after_steps:
                        self._save_last()
                        return True
                    at_epoch_end = p.step_in_epoch == epoch_stop
                    if cfg.checkpoint_every and p.global_step % cfg.checkpoint_every == 0 and not at_epoch_end:
                        self._save_last()  # the epoch-end checkpoint follows validation
            self._end_epoch(val_fn, log_file)
        return False

    def _loader(self, train_set: Dataset, collate_fn: Callable | None, epoch: int, start: int, stop: int) -> DataLoader:
        cfg = self.config
        sampler = EpochSampler(train_set, num_replicas=self.world_size, rank=self.rank, seed=cfg.seed, shuffle=cfg.shuffle)
        sampler.set_epoch(epoch)
        sampler.set_range(start * cfg.batch_size, stop * cfg.batch_size)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)  # before the workers copy the data set
        return DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.num_workers,
            collate_fn=collate_fn,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            worker_init_fn=functools.partial(seed_worker, seed=cfg.seed, epoch=epoch, rank=self.rank),
            # Without its own generator the loader draws worker seeds from the global torch RNG, which would
            # make a resumed run's RNG stream differ from an uninterrupted one.
            generator=torch.Generator().manual_seed(_derived_seed(cfg.seed, epoch, self.rank)),
        )

    def _train_step(self, batch: Any, step_fn: StepFn, log_file: TextIO | None) -> None:
        cfg, p = self.config, self.position
        batch = move_to_device(batch, self.device, self.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = step_fn(self.train_model, batch)
        well_formed = isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], torch.Tensor)
        if not (well_formed and out[0].numel() == 1):
            raise TypeError("step_fn must return (loss, logs): a one-element loss tensor and a dict of floats")
        loss, logs = out
        logs = _floats(logs)
        loss_value = dist_utils.all_reduce_mean({"loss": loss.detach().float().item()})["loss"]
        if not math.isfinite(loss_value):
            self._diverged(loss_value, logs)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step_batch()
        p.global_step += 1
        p.step_in_epoch += 1
        p.epoch_loss_sum += loss_value
        p.epoch_loss_count += 1
        if p.global_step % cfg.log_every == 0:
            clash = _RESERVED_LOG_KEYS & set(logs)
            if clash:
                raise ValueError(f"step_fn logs use reserved names {sorted(clash)}; rename them")
            logs = dist_utils.all_reduce_mean(logs)
            self._write_log(log_file, {"kind": "train", "step": p.global_step, "epoch": p.epoch, "lr": lr,
                                       "loss": loss_value, **logs, "time": round(self.elapsed(), 3)})  # fmt: skip

    def _diverged(self, loss_value: float, logs: Mapping[str, float]) -> None:
        p = self.position
        step = p.global_step + 1
        kept = (
            f"the last good checkpoint {self.trainer.last_path} (step {self.last_saved_step}) is intact"
            if self.last_saved_step
            else "no checkpoint had been written yet"
        )
        raise TrainingDiverged(
            f"training diverged: loss is {loss_value} at step {step} (epoch {p.epoch}, batch {p.step_in_epoch} of "
            f"that epoch; 0-based); logged values {dict(logs)}; lr {self.optimizer.param_groups[0]['lr']:.3g}. "
            f"{kept}. Lower lr or set grad_clip, then fit again to resume.",
            step=step, epoch=p.epoch, loss=loss_value, logs=logs,
        )  # fmt: skip

    def _end_epoch(self, val_fn: ValFn | None, log_file: TextIO | None) -> None:
        p = self.position
        if val_fn is not None:
            self.model.eval()
            with torch.no_grad():
                metrics = _floats(val_fn(self.model) or {})
            self.model.train()
            p.val_metrics = dist_utils.broadcast_object(metrics)
            self._write_log(log_file, {"kind": "val", "step": p.global_step, "epoch": p.epoch, **p.val_metrics,
                                       "time": round(self.elapsed(), 3)})  # fmt: skip
        self.schedule.step_epoch(p.val_metrics)
        p.epoch += 1
        p.step_in_epoch = 0
        self._save_last()

    def _write_log(self, log_file: TextIO | None, record: dict[str, Any]) -> None:
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    def _save_last(self) -> None:
        p = self.position
        p.elapsed_s = self.elapsed()
        rng_states = dist_utils.gather_objects(capture_rng_state())  # every rank takes part
        if self.is_main:
            save_checkpoint(
                self.trainer.last_path,
                {
                    "format": 1,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.schedule.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "position": dataclasses.asdict(p),
                    "rng": rng_states,
                    "config": self.config.to_dict(),
                    "world_size": self.world_size,
                },
            )
        self.last_saved_step = p.global_step


__all__ = [
    "EpochSampler",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "move_to_device",
    "read_metrics_log",
    "seed_worker",
    "truncate_metrics_log",
]
