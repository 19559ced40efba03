"""Receptive fields from module definitions (RSN report, eq. 2) and measured by input gradients.

:func:`receptive_fields` traces a module with ``torch.fx`` and propagates, through every node of its graph, the
*set* of receptive fields of all paths from the input: a convolution or pooling with kernel ``f``, stride ``s``
and dilation ``d`` turns a path's ``(l, j)`` (size in input pixels, product of the strides before it) into
``(l + d*(f-1)*j, j*s)`` (eq. 2); additions, concatenations and splits take the union of their inputs' sets;
shape-preserving modules (BN, ReLU, ...) keep it. A ResNet bottleneck has one path through one 3x3 conv; an RSN
bottleneck has many paths of different lengths, which is Table 1's point.

:func:`measured_receptive_field` checks a size empirically: with positive weights and a positive input nothing is
clipped by a ReLU, so the support of the gradient of one output cell with respect to the input is the union of all
paths' fields, i.e. the largest receptive field.

Receptive fields are along the height axis (all kernels here are square).
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Callable, Iterable

import torch
from torch import fx, nn

#: One path's receptive field: (size in input pixels, jump = product of the strides before it).
Field = tuple[float, int]

#: Modules that do not change the receptive field.
_TRANSPARENT = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU,
    nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout2d,
)
#: Functions and methods whose output field is the union of their tensor inputs' fields.
_UNION_FUNCTIONS = (
    operator.add, operator.mul, operator.sub, operator.getitem, operator.iadd, operator.imul, torch.add, torch.mul,
    torch.cat, torch.split, torch.chunk, torch.relu, torch.sigmoid, torch.flatten,
    torch.nn.functional.relu, torch.nn.functional.sigmoid,
)
_UNION_METHODS = ("add", "add_", "mul", "mul_", "relu", "relu_", "sigmoid", "split", "chunk", "flatten", "contiguous")


def _pair(value) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


def grow(fields: Iterable[Field], kernel_size: int, stride: int = 1, dilation: int = 1) -> frozenset[Field]:
    """Eq. 2 on every path: ``l_k = l_(k-1) + (f_k - 1) * d * prod(s_i)`` and the jump times ``s_k``."""
    return frozenset((size + dilation * (kernel_size - 1) * jump, jump * stride) for size, jump in fields)


def _module_fields(module: nn.Module, fields: frozenset[Field], name: str) -> frozenset[Field]:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        dilation = _pair(getattr(module, "dilation", 1))
        return grow(fields, _pair(module.kernel_size), _pair(module.stride), dilation)
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return frozenset((math.inf, jump) for _, jump in fields)  # global pooling sees the whole input
    if isinstance(module, _TRANSPARENT):
        return fields
    raise NotImplementedError(f"receptive field of module {name!r} ({type(module).__name__}) is not defined")


def _tensor_args(args) -> list[fx.Node]:
    found: list[fx.Node] = []
    for arg in args:
        if isinstance(arg, fx.Node):
            found.append(arg)
        elif isinstance(arg, (list, tuple)):
            found.extend(_tensor_args(arg))
    return found


def receptive_fields(module: nn.Module) -> tuple[fx.GraphModule, dict[str, frozenset[Field]]]:
    """Trace ``module`` (one tensor input) and return its graph and each node's set of ``(size, jump)`` fields.

    Raises ``NotImplementedError`` naming the node for an operation whose receptive field is not defined here.
    """
    graph = fx.symbolic_trace(module)
    modules = dict(graph.named_modules())
    fields: dict[str, frozenset[Field]] = {}
    inputs = [n for n in graph.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ValueError(f"{type(module).__name__}: expected one input, the traced graph has {len(inputs)}")
    for node in graph.graph.nodes:
        sources = [fields[a.name] for a in _tensor_args(node.args) if a.name in fields]
        union = frozenset().union(*sources) if sources else frozenset()
        if node.op == "placeholder":
            fields[node.name] = frozenset({(1, 1)})
        elif node.op == "call_module":
            fields[node.name] = _module_fields(modules[node.target], union, node.target)
        elif node.op == "call_function" and node.target in _UNION_FUNCTIONS:
            fields[node.name] = union
        elif node.op == "call_method" and node.target in _UNION_METHODS:
            fields[node.name] = union
        elif node.op in ("output", "get_attr"):
            fields[node.name] = union
        else:
            raise NotImplementedError(f"receptive field of node {node.name!r} ({node.op} {node.target}) is not defined")
    return graph, fields


def sizes(fields: Iterable[Field]) -> list[int]:
    """The distinct receptive-field sizes of a set of paths, ascending (``inf`` for global pooling)."""
    return sorted({size if math.isinf(size) else int(size) for size, _ in fields})


def bottleneck_fields(block: nn.Module) -> list[list[int]]:
    """Table 1 for one bottleneck: the receptive-field sizes of the features that its final 1x1 fusion
    convolution combines, in pixels of the block's input.

    For an RSN block these are the branch outputs ``y_1..y_n`` (the inputs of its ``torch.cat``); for a ResNet
    bottleneck, the output of its 3x3 convolution (one entry).
    """
    graph, fields = receptive_fields(block)
    nodes = list(graph.graph.nodes)
    for node in nodes:
        if node.op == "call_function" and node.target is torch.cat:
            return [sizes(fields[arg.name]) for arg in _tensor_args(node.args)]
    modules = dict(graph.named_modules())
    convs = [n for n in nodes if n.op == "call_module" and isinstance(modules[n.target], nn.Conv2d)]
    last_in_body = [n for n in convs if _pair(modules[n.target].kernel_size) > 1]
    if not last_in_body:
        raise ValueError(f"{type(block).__name__}: has neither a concatenation nor a convolution larger than 1x1")
    return [sizes(fields[last_in_body[-1].name])]  # BN and ReLU after it keep the field


def positive_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy with every conv/linear weight set to ``1 / fan_in`` and biases zero, so that a positive
    input keeps every activation positive (no ReLU clips a path) and magnitudes stay bounded."""
    copied = copy.deepcopy(module).eval()
    with torch.no_grad():
        for m in copied.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.fill_(1.0 / max(1, m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.reset_parameters()
    return copied


def measured_receptive_field(
    feature_fn: Callable[[torch.Tensor], torch.Tensor], in_channels: int, size: tuple[int, int]
) -> int:
    """Rows of the input that influence the centre cell of ``feature_fn(input)``.

    ``feature_fn`` maps an input ``(1, in_channels, H, W)`` (all ones) to a feature map ``(1, C, h, w)``; the
    gradient of the centre cell's channel sum with respect to the input is taken, and the extent of its nonzero
    rows is returned. ``size`` must leave room for the whole field (else the count is clipped by the border).
    Use a :func:`positive_copy` of the module so that no ReLU hides a path.
    """
    image = torch.ones(1, in_channels, *size, requires_grad=True)
    features = feature_fn(image)
    h, w = features.shape[-2:]
    features[0, :, h // 2, w // 2].sum().backward()
    rows = torch.nonzero(image.grad[0].abs().sum(dim=(0, 2)) > 0).flatten()
    if rows.numel() == 0:
        return 0
    if rows[0] == 0 or rows[-1] == size[0] - 1:
        raise ValueError(f"input of {size[0]} rows clips the receptive field; use a larger size")
    return int(rows[-1] - rows[0] + 1)


def measured_bottleneck_fields(block: nn.Module, in_channels: int, size: tuple[int, int] = (41, 41)) -> list[int]:
    """The largest receptive field of each feature that :func:`bottleneck_fields` lists, measured by input
    gradients on a :func:`positive_copy` of ``block`` (an RSN block's ``branch_outputs``, or a ResNet
    bottleneck's 3x3 output)."""
    probe = positive_copy(block)
    if hasattr(probe, "branch_outputs"):
        count = len(probe.branch_outputs(torch.ones(1, in_channels, 8, 8)))
        return [measured_receptive_field(lambda x, i=i: probe.branch_outputs(x)[i], in_channels, size) for i in range(count)]
    convs = [m for m in probe.modules() if isinstance(m, nn.Conv2d) and _pair(m.kernel_size) > 1]
    if not convs:
        raise ValueError(f"{type(block).__name__}: no convolution larger than 1x1 to probe")
    captured: list[torch.Tensor] = []
    hook = convs[-1].register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        def feature(x: torch.Tensor) -> torch.Tensor:
            captured.clear()
            probe(x)
            return captured[-1]

        return [measured_receptive_field(feature, in_channels, size)]
    finally:
        hook.remove()
