"""How tensors are computed: bf16 autocast where the hardware does it right, channels-last layout.

On CPUs, bf16 needs AMX-BF16 tiles or AVX512-BF16 (``torch.cpu.get_capabilities()``), and 3-D
models need AMX: with AVX512-BF16 alone oneDNN's bf16 3-D convolution weight gradient is wrong
(torch 2.14, AMD EPYC: relative error 1.0 against fp32 for 64 channels at 4³ with a 5³ kernel,
the V-Net's deepest block; its loss went NaN after 18 steps), while the 2-D convolutions of the
U-Nets agreed to 0.4 % there.
"""

from __future__ import annotations

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
    where it measured 1.7× faster than fp32 (smp Unet-ResNet34, 8×128², 2 cores, AMX)."""
    if cfg.precision != "auto":
        return cfg.precision == "bf16"
    if device.type == "cuda":
        return True
    return cpu_bf16_trains(is_volumetric(cfg.arch))


def memory_format(ndim: int) -> torch.memory_format:
    """Channels-last for 4-D (N, C, H, W) and 5-D (N, C, X, Y, Z) tensors: oneDNN and cuDNN
    convolutions run faster on it (measured on 2 CPU cores with bf16: 1.5× for both U-Nets at
    8×128², 1.5× for the V-Net at 2×32³)."""
    return torch.channels_last_3d if ndim == 5 else torch.channels_last
