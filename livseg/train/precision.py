"""How tensors are computed: bf16 autocast where the hardware does it right, channels-last layout.

On CPUs, bf16 needs AMX-BF16 tiles or AVX512-BF16 (``torch.cpu.get_capabilities()``), and 3-D
models need AMX: with AVX512-BF16 alone (torch 2.14, AMD EPYC) oneDNN's bf16 weight gradient of
a 3-D convolution whose volume is smaller than its kernel is garbage — relative error 0.9 to
inf, or NaN, against fp32 for the V-Net's 5³ convolutions at 128 channels × 4³ and 256 × 2³
(64 × 8³ agreed to 0.4 %); the V-Net's loss went NaN after 18 steps. The U-Nets' 2-D
convolutions agreed to 0.4 % there, and the V-Net trained with bf16 on an AMX CPU.
"""

from __future__ import annotations

import warnings

import torch

from livseg.train.config import TrainConfig
from livseg.train.models import is_volumetric


def cpu_bf16_trains(volumetric: bool) -> bool:
    """True where bf16 training on this CPU is right (module docstring); False when torch
    cannot tell."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # torch before get_capabilities, or no cpuinfo
        return False
    return bool(caps.get("amx_bf16") or (caps.get("avx512_bf16") and not volumetric))


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast for training: GPUs, and CPUs where it trains right (``cpu_bf16_trains``),
    where it measured 1.7× faster than fp32 (smp Unet-ResNet34, 8×128², 2 cores, AMX).
    Each worker decides for its own device."""
    volumetric = is_volumetric(cfg.arch)
    if cfg.precision == "bf16" and device.type == "cpu" and not cpu_bf16_trains(volumetric):
        warnings.warn(
            f"precision=bf16 for {cfg.arch} on a CPU whose bf16 kernels are wrong for it "
            "(livseg.train.precision): the loss may go NaN; use precision=auto or fp32",
            stacklevel=2,
        )
    if cfg.precision != "auto":
        return cfg.precision == "bf16"
    if device.type == "cuda":
        return True
    return cpu_bf16_trains(volumetric)


def memory_format(ndim: int) -> torch.memory_format:
    """Channels-last for 4-D (N, C, H, W) and 5-D (N, C, X, Y, Z) tensors: oneDNN and cuDNN
    convolutions run faster on it (measured on 2 CPU cores with bf16: 1.5× for both U-Nets at
    8×128², 1.5× for the V-Net at 2×32³)."""
    return torch.channels_last_3d if ndim == 5 else torch.channels_last
