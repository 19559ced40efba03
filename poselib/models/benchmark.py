"""``poselib bench step``: time one training step (forward, backward, Adam update) of a registered model.

It measures what the training engine's ``channels_last`` switch buys on the machine at hand: each memory format
is timed on the same random batch, and the loss is the sum of squares of every output map (the step's cost
does not depend on the loss). The two formats' steps alternate, so a machine whose speed drifts during the run
(shared CPUs do, by a third from hour to hour) slows both alike instead of biasing the ratio. Prints a table and,
as its last line, a JSON object ``{"benchmark", "model", "device", "threads", "batch", "input", "repeats",
"ms_per_step": {"contiguous", "channels_last"}, "speedup"}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch import nn

from poselib.cli import parse_size
from poselib.models.registry import build_model, get_entry
from poselib.presets import resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poselib bench step", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a registered model name (see poselib flops --list)")
    parser.add_argument("--input", type=parse_size, default=None, help="input HxW (default: the model's own)")
    parser.add_argument("--batch", type=int, default=32, help="images per step")
    parser.add_argument("--kwargs", type=json.loads, default={}, help='model keyword arguments as JSON, e.g. \'{"width": 16}\'')
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per memory format (the median is reported)")
    return parser


def _sum_of_squares(output) -> torch.Tensor:
    """Every tensor in a (nested) model output, squared and summed."""
    if isinstance(output, torch.Tensor):
        return output.float().pow(2).sum()
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)) and output:
        return sum(_sum_of_squares(item) for item in output)
    raise TypeError(f"cannot benchmark a model whose output is {type(output).__name__}; it needs map outputs")


class _Stepper:
    """One model, its Adam optimiser and the batch, all in one memory format; ``step()`` times a training step."""

    def __init__(self, model: nn.Module, images: torch.Tensor, *, channels_last: bool):
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(images.device, memory_format=memory_format).train()
        self.images = images.contiguous(memory_format=memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)

    def step(self) -> float:
        """Wall time in milliseconds of one forward, backward and update."""
        cuda = self.images.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.images.device)
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        _sum_of_squares(self.model(self.images)).backward()
        self.optimizer.step()
        if cuda:
            torch.cuda.synchronize(self.images.device)
        return (time.perf_counter() - start) * 1e3


def step_times_ms(make_model: Callable[[], nn.Module], images: torch.Tensor, *, repeats: int) -> dict[str, float]:
    """Median wall time in milliseconds of ``repeats`` training steps per memory format (``"contiguous"``,
    ``"channels_last"``), each model built by ``make_model`` under the same seed, the formats' steps alternating
    after two warm-up steps each."""
    steppers = {}
    for name, channels_last in (("contiguous", False), ("channels_last", True)):
        torch.manual_seed(0)
        steppers[name] = _Stepper(make_model(), images, channels_last=channels_last)
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for i in range(repeats + 2):
        for name, stepper in steppers.items():
            elapsed = stepper.step()
            if i >= 2:
                times[name].append(elapsed)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    size = args.input or get_entry(args.model).input_size
    torch.manual_seed(0)
    images = torch.randn(args.batch, get_entry(args.model).in_channels, *size, device=device)
    timings = step_times_ms(lambda: build_model(args.model, **args.kwargs), images, repeats=args.repeats)
    speedup = timings["contiguous"] / timings["channels_last"]
    print(f"{args.model} {args.kwargs or ''}: training step on {args.batch}x{size[0]}x{size[1]}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for name, ms in timings.items():
        print(f"  {name:<14} {ms:9.1f} ms/step")
    print(f"  channels_last speed-up: {speedup:.2f}x")
    print(json.dumps({
        "benchmark": "step", "model": args.model, "device": str(device), "threads": torch.get_num_threads(),
        "batch": args.batch, "input": list(size), "repeats": args.repeats,
        "ms_per_step": {name: round(ms, 2) for name, ms in timings.items()}, "speedup": round(speedup, 3),
    }))
    return 0
