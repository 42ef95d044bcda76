"""CPU int8 rewrites of the MERT audio tower: `quantize_audio_tower_int8` and the layers it swaps in.

Why a module of its own: these are runtime variants for CPU inference, not part of the architecture. A model
holding them cannot be saved (its packed weights would not reload); `MERAlignModel.quantize_for_cpu` calls
`quantize_audio_tower_int8` after loading.

Part of the model's remote code: imports only torch.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


class WindowedLinearConv1d(nn.Module):
    """An unpadded, ungrouped `nn.Conv1d` computed as one `nn.Linear` over strided windows of its input.

    Why: PyTorch's dynamic int8 quantisation covers `nn.Linear` only, and MERT's conv front end is about a
    third of its FLOPs. Written as a Linear over each output frame's input window, a conv layer becomes
    quantisable. Input and output are `[batch, channels, time]` like `Conv1d`, but the output is a
    transposed view of time-major memory: the next windowed layer reads it without a copy.
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        if not isinstance(conv, nn.Conv1d):
            raise TypeError(f"conv must be an nn.Conv1d, got {type(conv).__name__}")
        if conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
            raise ValueError(
                f"conv must have padding 0, dilation 1 and groups 1, got padding={conv.padding}, "
                f"dilation={conv.dilation}, groups={conv.groups}"
            )
        out_channels, in_channels, kernel = conv.weight.shape
        self.kernel_size, self.stride, self.in_channels = kernel, conv.stride[0], in_channels
        self.linear = nn.Linear(kernel * in_channels, out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            # window rows are time steps, each `in_channels` wide: weight [out, in, k] -> [out, k * in]
            self.linear.weight.copy_(conv.weight.detach().permute(0, 2, 1).reshape(out_channels, -1))
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias.detach())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        time_major = hidden.transpose(1, 2).contiguous()  # free when `hidden` came from another windowed layer
        batch, steps, channels = time_major.shape
        if channels != self.in_channels:
            raise ValueError(f"hidden must have {self.in_channels} channels, got shape {tuple(hidden.shape)}")
        frames = (steps - self.kernel_size) // self.stride + 1
        windows = time_major.as_strided(
            (batch, frames, self.kernel_size * channels),
            (steps * channels, self.stride * channels, 1),
            time_major.storage_offset(),
        )
        return self.linear(windows).transpose(1, 2)


class FoldedGroupNormConv(nn.Module):
    """MERT's first conv layer (waveform -> C channels) + per-channel GroupNorm + GELU in one product, time-major.

    Why: the GroupNorm normalises each channel over the whole segment, which stock code does in a separate
    pass over the 512 x 48,000 output (plus a copy for the activation, and one more to make it time-major
    for a windowed next layer). For a conv of a single input channel, a channel's mean and variance over
    time follow from the k-sample windows' mean m and k x k covariance S: mean_c = w_c.m, var_c = w_c' S w_c.
    Folding the norm into per-segment weights, `gelu(windows @ (w * a) + b)`, needs one pass and one buffer.
    A conv bias cancels in the norm. Equal to the stock layer up to float rounding (statistics in float64).
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        conv, norm = getattr(layer, "conv", None), getattr(layer, "layer_norm", None)
        if not (isinstance(conv, nn.Conv1d) and isinstance(norm, nn.GroupNorm)):
            raise TypeError(
                f"layer must hold a Conv1d `conv` and a GroupNorm `layer_norm`, got {type(layer).__name__}"
            )
        if (
            conv.in_channels != 1
            or norm.num_groups != conv.out_channels
            or conv.padding != (0,)
            or conv.dilation != (1,)
        ):
            raise ValueError(
                "layer must be a one-input-channel, unpadded conv followed by a per-channel GroupNorm "
                f"(got in_channels={conv.in_channels}, groups={norm.num_groups}, channels={conv.out_channels})"
            )
        channels = conv.out_channels
        self.kernel_size, self.stride, self.eps = conv.kernel_size[0], conv.stride[0], float(norm.eps)
        # float64 (the statistics need the digits), and not saved: a model holding this layer is a runtime variant
        self.register_buffer("weight", conv.weight.detach()[:, 0, :].double().clone(), persistent=False)  # [C, k]
        gamma = norm.weight.detach() if norm.affine else torch.ones(channels)
        beta = norm.bias.detach() if norm.affine else torch.zeros(channels)
        self.register_buffer("gamma", gamma.double().clone(), persistent=False)
        self.register_buffer("beta", beta.double().clone(), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 3 or hidden.shape[1] != 1:
            raise ValueError(f"hidden must be [batch, 1, samples], got shape {tuple(hidden.shape)}")
        # GroupNorm ignores a per-channel constant, so removing the waveform's mean changes nothing but
        # keeps a DC offset from cancelling digits in the float32 product below
        waveform = hidden[:, 0] - hidden[:, 0].mean(dim=1, keepdim=True, dtype=torch.float64).to(hidden.dtype)
        batch, samples = waveform.shape
        frames = (samples - self.kernel_size) // self.stride + 1
        windows = waveform.as_strided(
            (batch, frames, self.kernel_size), (samples, self.stride, 1), waveform.storage_offset()
        )
        exact = windows.double()
        mean = exact.mean(dim=1)  # [B, k]
        centred = exact - mean[:, None]
        covariance = centred.transpose(1, 2) @ centred / frames  # [B, k, k], biased like GroupNorm's variance
        variance = torch.einsum("ck,bkl,cl->bc", self.weight, covariance, self.weight)
        scale = self.gamma / torch.sqrt(variance + self.eps)  # [B, C]
        shift = self.beta - (mean @ self.weight.t()) * scale
        weights = (self.weight.t()[None] * scale[:, None, :]).to(hidden.dtype)  # [B, k, C]
        out = torch.baddbmm(shift.to(hidden.dtype)[:, None, :], windows, weights)  # [B, frames, C]
        torch.ops.aten.gelu_(out)  # in place: one 98 MB buffer per 10 s segment instead of three
        return out.transpose(1, 2)


def _quantize_linears_int8(module: nn.Module) -> None:
    """Replace every `nn.Linear` inside `module` by PyTorch's dynamically quantised int8 Linear, in place."""
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as err:  # pragma: no cover - present in every torch this code supports
        raise RuntimeError(
            f"dynamic int8 quantisation needs torch.ao.quantization, missing from torch {torch.__version__}"
        ) from err
    with warnings.catch_warnings():
        # torch announces a move of eager quantisation to torchao; the API still works and adds no dependency
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)


def quantize_audio_tower_int8(model, front_end_layers: int = 3) -> None:
    """Quantise `model.audio_model` to int8 for CPU inference, in place (see `MERAlignModel.quantize_for_cpu`).

    Every `nn.Linear` of the tower becomes PyTorch's dynamically quantised int8 Linear; the `front_end_layers`
    conv layers after the first become int8 Linears over their input windows (`WindowedLinearConv1d`), and the
    first layer's GroupNorm is folded into its conv (`FoldedGroupNormConv`, float).
    """
    tower = model.audio_model
    parameters = list(tower.parameters())
    devices = {p.device.type for p in parameters}
    if devices != {"cpu"}:
        raise ValueError(f"quantize_for_cpu needs the audio tower on the CPU, but it is on {sorted(devices)}")
    dtypes = {p.dtype for p in parameters}
    if dtypes != {torch.float32}:
        raise ValueError(f"quantize_for_cpu needs a float32 audio tower, got {sorted(map(str, dtypes))}")
    conv_layers = tower.feature_extractor.conv_layers
    most = len(conv_layers) - 1
    if (
        isinstance(front_end_layers, bool)
        or not isinstance(front_end_layers, int)
        or not 0 <= front_end_layers <= most
    ):
        raise ValueError(f"front_end_layers must be an int in [0, {most}], got {front_end_layers!r}")
    audio_config = model.config.audio_config
    if (
        front_end_layers
        and audio_config.feat_extract_norm == "group"
        and audio_config.feat_extract_activation == "gelu"
    ):
        conv_layers[0] = FoldedGroupNormConv(conv_layers[0])  # time-major output: no copy before layer 1
    for layer in conv_layers[1 : 1 + front_end_layers]:
        layer.conv = WindowedLinearConv1d(layer.conv)
    _quantize_linears_int8(tower)
