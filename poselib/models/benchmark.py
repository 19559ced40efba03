"""``poselib bench step``: time one training step (forward, backward, Adam update) of a registered model.

It measures what the training engine's ``channels_last`` switch buys on the machine at hand: each memory format
is timed on the same random batch, and the loss is the sum of squares of every output map (the step's cost
does not depend on the loss). Prints a table and, as its last line, a JSON object ``{"benchmark", "model",
"device", "threads", "batch", "input", "repeats", "ms_per_step": {"contiguous", "channels_last"},
"speedup"}``.
"""

from __future__ import annotations

import argparse
import json
import time

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


def step_time_ms(model: nn.Module, images: torch.Tensor, *, channels_last: bool, repeats: int) -> float:
    """Median wall time in milliseconds of ``repeats`` training steps, after two warm-up steps."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(images.device, memory_format=memory_format).train()
    images = images.contiguous(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 2):
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        _sum_of_squares(model(images)).backward()
        optimizer.step()
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)
        if i >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    size = args.input or get_entry(args.model).input_size
    torch.manual_seed(0)
    images = torch.randn(args.batch, get_entry(args.model).in_channels, *size, device=device)
    timings = {}
    for name, channels_last in (("contiguous", False), ("channels_last", True)):
        torch.manual_seed(0)
        timings[name] = step_time_ms(build_model(args.model, **args.kwargs), images, channels_last=channels_last,
                                     repeats=args.repeats)
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
