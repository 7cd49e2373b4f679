"""The Linear / Conv2d layers owning the selected parameters, and hooks recording their inputs and outputs.

Shared by the per-example ``"layers"`` gradient route and EK-FAC. A layer's parameter matrix is
``M = [W | b]`` with ``W`` reshaped to ``out × in·kh·kw``; its per-example gradient is
``Σ_s δ_s a_sᵀ`` over positions ``s`` with ``a`` the input rows of :func:`patches` (im2col patches
for a convolution, a trailing 1 for the bias) and ``δ`` the output-gradient rows of
:func:`output_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError
from .network import Network

Tensor = torch.Tensor


def layers_of(network: Network) -> list[tuple[str, nn.Module]]:
    """The Linear / Conv2d layers owning the selected parameters; refuse anything else."""
    offsets = network.params.offsets()
    layers = []
    for name, module in network.module.named_modules():
        own = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
        chosen = [p for p in own if p in offsets]
        if not chosen:
            continue
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise ModelError(
                f"EK-FAC supports nn.Linear and nn.Conv2d layers only, but the selected parameters include `{chosen[0]}` "
                f"of a {type(module).__name__}; restrict `params=` to Linear/Conv2d layers or use hessian='cg' or 'lissa'."
            )
        if len(chosen) != len(own):
            raise ModelError(
                f"EK-FAC treats a layer's weight and bias together; `params=` selects {chosen} of layer `{name}` "
                f"but not all of {own}. Select the whole layer (its module name `{name}`)."
            )
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str)):
            raise ModelError(
                f"EK-FAC supports Conv2d with groups=1, zero padding given as integers; layer `{name}` is not; use hessian='cg'."
            )
        layers.append((name, module))
    return layers


def patches(module: nn.Module, x: Tensor) -> Tensor:
    """Layer inputs as ``(b, positions, in')`` rows, with a ones column for a bias."""
    if isinstance(module, nn.Conv2d):
        cols = nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        rows = cols.transpose(1, 2)
    else:
        rows = x.reshape(x.shape[0], -1, x.shape[-1])
    if module.bias is not None:
        rows = torch.cat([rows, torch.ones(*rows.shape[:2], 1, dtype=rows.dtype, device=rows.device)], dim=2)
    return rows


def output_rows(module: nn.Module, g: Tensor) -> Tensor:
    """Output gradients as ``(b, positions, out)`` rows."""
    if isinstance(module, nn.Conv2d):
        return g.flatten(2).transpose(1, 2)
    return g.reshape(g.shape[0], -1, g.shape[-1])


class Recorder:
    """Forward hooks keeping each layer's input patches, output tensor and call count for one forward pass."""

    def __init__(self, layers: list[tuple[str, nn.Module]]) -> None:
        self.inputs: dict[str, Tensor] = {}
        self.outputs: dict[str, Tensor] = {}
        self.calls: dict[str, int] = {name: 0 for name, _ in layers}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in layers]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            self.inputs[name] = patches(module, args[0].detach())
            self.outputs[name] = output
            self.calls[name] += 1

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@dataclass(frozen=True)
class LayerSlot:
    """Where a Linear / Conv2d layer's parameter matrix ``M = [W | b]`` (``out × in'``) sits in the flat vector."""

    module_name: str
    weight: slice
    bias: slice | None
    out_features: int

    @property
    def in_features(self) -> int:
        """``in'``: the columns of ``M`` (``in·kh·kw``, plus one for a bias)."""
        return (self.weight.stop - self.weight.start) // self.out_features + (self.bias is not None)

    def matrices(self, flat: Tensor) -> Tensor:
        """``(m, out, in')`` parameter matrices ``[W | b]`` of flat rows ``(m, P)``."""
        w = flat[:, self.weight].reshape(flat.shape[0], self.out_features, -1)
        return w if self.bias is None else torch.cat([w, flat[:, self.bias].unsqueeze(2)], dim=2)

    def write(self, flat: Tensor, m: Tensor) -> None:
        """Store matrices ``m`` ``(m, out, in')`` into the flat rows (inverse of :meth:`matrices`)."""
        if self.bias is None:
            flat[:, self.weight] = m.reshape(m.shape[0], -1)
        else:
            flat[:, self.weight] = m[:, :, :-1].reshape(m.shape[0], -1)
            flat[:, self.bias] = m[:, :, -1]


def layer_slots(network: Network) -> list[LayerSlot]:
    """The :class:`LayerSlot` of each selected Linear / Conv2d layer, in module order."""
    offsets = network.params.offsets()
    slots = []
    for name, module in layers_of(network):
        prefix = f"{name}." if name else ""
        out = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        slots.append(LayerSlot(name, offsets[prefix + "weight"], offsets.get(prefix + "bias"), out))
    return slots
