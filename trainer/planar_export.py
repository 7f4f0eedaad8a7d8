"""The networks' 1-D convolutions rewritten as 2-D ones of height 1, for export only.

Why: onnxruntime's CPU provider runs 2-D convolutions in its blocked (NCHWc) layout with AVX2/AVX-512
kernels, and 1-D ones through a generic im2col path; the encoder's stack ran 2x faster as 2-D, same weights
(benchmarks/README.md, round 28). The transposed convolutions of the generator become
polyphase convolutions: each output phase of a stride-s transposed convolution is an ordinary convolution
of the input, so one convolution with s times the output channels, then an interleave, computes it exactly.

The fit trains the 1-D networks; only the exported copy changes, and the export's parity gate compares that
copy's ONNX graph with the original torch module, so a wrong rewrite fails the fit.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _first(values: object) -> int:
    """The single entry of a 1-D layer's size tuple (torch types them loosely)."""
    if isinstance(values, str):
        raise ValueError(f"string sizes are not rewritten: {values!r}")
    return int(values[0]) if isinstance(values, tuple | list) else int(values)  # type: ignore[call-overload]


class PlanarSequential(nn.Sequential):
    """A Sequential of 2-D layers that takes and returns [b, C, W]: one unsqueeze in, one squeeze out.

    The children keep the indices of the 1-D Sequential they replace, so module paths in the exported
    graph (which quantize.py reads to choose layers) do not change.
    """

    def forward(self, windows: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """[b, C, W] -> [b, C', W']."""
        planar = windows.unsqueeze(2)
        for layer in self:
            planar = layer(planar)
        return planar.squeeze(2)


class PolyphaseTranspose(nn.Module):
    """A stride-s ConvTranspose1d as one 2-D convolution producing all s output phases, then interleaved.

    out[s*m + r] = sum_j in[m - j] * W[:, :, s*j + r + p] for each phase r: a plain correlation of the input.
    """

    def __init__(self, layer: nn.ConvTranspose1d) -> None:
        super().__init__()
        stride, kernel, padding = _first(layer.stride), _first(layer.kernel_size), _first(layer.padding)
        if not polyphase_supported(layer):
            raise ValueError(f"no polyphase form for {layer}")
        phase_taps = [
            [j for j in range(-kernel, kernel + 1) if 0 <= stride * j + r + padding < kernel]
            for r in range(stride)
        ]
        low = min(min(taps) for taps in phase_taps)
        high = max(max(taps) for taps in phase_taps)
        if low != -high:
            raise ValueError(f"the polyphase form of {layer} needs asymmetric padding")
        width = high - low + 1
        weight = layer.weight.detach()  # [in, out, kernel]
        in_channels, out_channels = weight.shape[0], weight.shape[1]
        planar = torch.zeros(stride * out_channels, in_channels, 1, width, dtype=weight.dtype)
        for r, taps in enumerate(phase_taps):
            for j in taps:
                # the correlation reads in[m - high + u]; tap j reads in[m - j], so u = high - j
                planar[r * out_channels : (r + 1) * out_channels, :, 0, high - j] = weight[
                    :, :, stride * j + r + padding
                ].T
        self.conv = nn.Conv2d(in_channels, stride * out_channels, (1, width), padding=(0, high))
        self.conv.weight.data.copy_(planar)
        bias = layer.bias.detach() if layer.bias is not None else torch.zeros(out_channels)
        planar_bias = self.conv.bias
        assert planar_bias is not None  # Conv2d's default
        planar_bias.data.copy_(bias.repeat(stride))
        self.stride, self.out_channels = stride, out_channels

    def forward(self, planar: torch.Tensor) -> torch.Tensor:
        """[b, in, 1, L] -> [b, out, 1, s*L]."""
        phases = self.conv(planar)
        batch, length = phases.shape[0], phases.shape[3]
        interleaved = phases.reshape(batch, self.stride, self.out_channels, length).permute(0, 2, 3, 1)
        out: torch.Tensor = interleaved.reshape(batch, self.out_channels, 1, length * self.stride)
        return out


def polyphase_supported(layer: nn.ConvTranspose1d) -> bool:
    """Whether the layer maps L readings to exactly stride*L with one group and no dilation."""
    stride, kernel, padding = _first(layer.stride), _first(layer.kernel_size), _first(layer.padding)
    return (
        layer.groups == 1
        and _first(layer.dilation) == 1
        and _first(layer.output_padding) == 0
        and kernel - 2 * padding == stride
    )


def _planar_conv(layer: nn.Conv1d) -> nn.Conv2d:
    planar = nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        (1, _first(layer.kernel_size)),
        stride=(1, _first(layer.stride)),
        padding=(0, _first(layer.padding)),
        dilation=(1, _first(layer.dilation)),
        groups=layer.groups,
        bias=layer.bias is not None,
    )
    planar.weight.data.copy_(layer.weight.detach().unsqueeze(2))
    if layer.bias is not None and planar.bias is not None:
        planar.bias.data.copy_(layer.bias.detach())
    return planar


def _planar_layer(layer: nn.Module) -> nn.Module | None:
    """The 2-D counterpart of one layer, or None when the Sequential cannot be rewritten."""
    if isinstance(layer, nn.Conv1d) and layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
        return _planar_conv(layer)
    if isinstance(layer, nn.ConvTranspose1d) and polyphase_supported(layer):
        try:
            return PolyphaseTranspose(layer)
        except ValueError:  # a phase would need padding on one side only
            return None
    if isinstance(layer, nn.LeakyReLU | nn.ReLU | nn.Identity | nn.Tanh):
        return copy.deepcopy(layer)
    return None


def _planar_sequential(sequence: nn.Sequential) -> PlanarSequential | None:
    layers = [_planar_layer(layer) for layer in sequence]
    if any(layer is None for layer in layers):
        return None
    planar = PlanarSequential()
    for name, layer in zip(sequence._modules, layers, strict=True):
        planar.add_module(name, layer)
    return planar


def with_planar_convolutions(module: nn.Module) -> nn.Module:
    """A copy of `module` whose convolution stacks run as 2-D layers; the original is untouched.

    Every Sequential made only of 1-D convolutions, transposed convolutions that keep an exact polyphase
    form, and pointwise activations is rewritten; anything else is left as it is.
    """
    planar = copy.deepcopy(module)
    for parent in list(planar.modules()):
        for name, child in list(parent.named_children()):
            has_conv = any(isinstance(m, nn.Conv1d | nn.ConvTranspose1d) for m in child.children())
            if type(child) is nn.Sequential and has_conv:
                rewritten = _planar_sequential(child)
                if rewritten is not None:
                    setattr(parent, name, rewritten)
    return planar
