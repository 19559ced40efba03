"""Optimisers and learning-rate schedules named by a :class:`~poselib.engine.trainer.TrainConfig`.

Step-based schedules are multiplicative factors of the base learning rate as a function of the 0-based index of
the optimiser step about to be taken (:func:`lr_factor`); ``"plateau"`` reacts to a validation metric at epoch
ends instead. :class:`LRSchedule` hides the difference from the training loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import torch

if TYPE_CHECKING:
    from poselib.engine.trainer import TrainConfig

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "step", "plateau", "warmup_linear", "warmup_step")


def build_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with ``momentum``/``nesterov``) at ``config.lr`` and ``config.weight_decay``."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def lr_factor(
    step: int,
    *,
    schedule: str,
    steps_per_epoch: int,
    total_steps: int,
    warmup_steps: int = 0,
    milestones: Iterable[int] = (),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the base learning rate for the optimiser step with 0-based index ``step``.

    - ``"constant"``: 1.
    - ``"step"``: ``gamma ** (number of milestones <= current epoch)``; milestones are in epochs and the current
      epoch is ``step // steps_per_epoch``.
    - ``"warmup_linear"``: ``(step + 1) / warmup_steps`` during warm-up, then linear decay
      ``(total_steps - step) / (total_steps - warmup_steps)``, which reaches zero just after the last step.
    - ``"warmup_step"``: the same warm-up, then the ``"step"`` factor.

    ``"plateau"`` is not step-based (see :class:`LRSchedule`) and returns 1 here.
    """
    if schedule in ("constant", "plateau"):
        return 1.0
    if schedule in ("warmup_linear", "warmup_step") and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule in ("step", "warmup_step"):
        epoch = step // max(steps_per_epoch, 1)
        return gamma ** sum(1 for m in milestones if m <= epoch)
    if schedule == "warmup_linear":
        return max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


class LRSchedule:
    """Learning-rate schedule driven by the trainer: :meth:`step_batch` after every optimiser step and
    :meth:`step_epoch` with the validation metrics after every epoch.

    Args:
        optimizer: its parameter groups' ``lr`` are set by the schedule.
        config: ``schedule``, ``warmup_steps``, ``milestones``, ``gamma`` and the plateau fields.
        steps_per_epoch: optimiser steps in one epoch (for milestones given in epochs).
        total_steps: optimiser steps in the whole run (for the linear decay).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int, total_steps: int):
        self.config = config
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self.lambda_lr: torch.optim.lr_scheduler.LambdaLR | None = None
        if config.schedule == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=config.mode, factor=config.factor, patience=config.patience
            )
        else:
            factor: Callable[[int], float] = lambda step: lr_factor(  # noqa: E731
                step,
                schedule=config.schedule,
                steps_per_epoch=steps_per_epoch,
                total_steps=total_steps,
                warmup_steps=config.warmup_steps,
                milestones=config.milestones,
                gamma=config.gamma,
            )
            self.lambda_lr = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def step_batch(self) -> None:
        """Advance a step-based schedule by one optimiser step."""
        if self.lambda_lr is not None:
            self.lambda_lr.step()

    def step_epoch(self, metrics: Mapping[str, float]) -> None:
        """End of an epoch: ``"plateau"`` reads ``metrics[config.plateau_metric]``; other schedules ignore it."""
        if self.plateau is None:
            return
        name = self.config.plateau_metric
        if name not in metrics:
            raise KeyError(
                f"schedule 'plateau' watches {name!r} but val_fn returned {sorted(metrics) or 'no metrics'}"
            )
        self.plateau.step(float(metrics[name]))

    def state_dict(self) -> dict:
        scheduler = self.plateau if self.plateau is not None else self.lambda_lr
        return scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        scheduler = self.plateau if self.plateau is not None else self.lambda_lr
        scheduler.load_state_dict(state)
