"""``build_model(arch, …)``: the study's architectures behind one registry.

- ``unet``: the study's plain U-Net (conv–BN–LeakyReLU blocks, 2×2 max-pool, dropout 0.2,
  upsampling, concatenation; logits out, softmax in the loss and at inference);
- ``unet-resnet34``: the study's UNET-TLT, smp ``Unet`` with a ResNet34 encoder;
- ``unet-<encoder>``: any smp encoder by name (``unet-inceptionv4``, ``unet-efficientnet-b0``…);
- ``vnet``: a 3-D V-Net (MONAI's) for the volume shards.

Pretrained encoders come from a file or ``s3://`` path (a torchvision/timm state dict); the
``imagenet`` shortcut uses smp's own download and only works where the model hub is reachable.
"""

from __future__ import annotations

import io

import torch
from torch import nn

from livseg.errors import UsageError
from livseg.io import storage

PLAIN_ARCHS = ("unet", "vnet")
SMP_PREFIX = "unet-"
_HEAD_KEYS = ("fc.", "classifier.", "last_linear.", "head.")
_WRAPPER_PREFIXES = ("module.", "model.", "encoder.", "backbone.")


def _block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers += [nn.Conv2d(c, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    if dropout:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class PlainUNet(nn.Module):
    """The study's U-Net. Shape: (N, C_in, H, W) → logits (N, classes, H, W), H and W ÷ 16.

    3×3 convolutions instead of the study's 5×5 keep the receptive field growth of the classic
    U-Net at a third of the cost; widths double per level from ``base``.
    """

    def __init__(self, in_channels: int, classes: int, base: int = 32, dropout: float = 0.2):
        super().__init__()
        widths = [base * 2**i for i in range(5)]
        self.down = nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            self.down.append(_block(cin, w, dropout if i >= 3 else 0.0))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up = nn.ModuleList(
            _block(widths[i + 1] + widths[i], widths[i], 0.0) for i in reversed(range(4))
        )
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = block(torch.cat([self.upsample(x), skips.pop()], dim=1))
        return self.head(x)


class VNet(nn.Module):
    """The study's V-Net: MONAI's ``VNet`` with a 1×1×1 classifier on top.

    Shape: (N, C_in, X, Y, Z) → logits (N, classes, X, Y, Z), each side a multiple of 16.
    Why the extra layer: MONAI's output block narrows 32 channels to ``out_channels`` through a
    batch-normalised 5×5×5 convolution and an ELU before its own 1×1 convolution. With
    ``out_channels`` = 3 classes that is a 3-channel normalised bottleneck, and with the liver at
    ~3 % of the voxels it collapsed to "foreground everywhere" (validation liver Dice 0.053 after
    150 steps at 32³, at lr 1e-3 and 3e-4, bf16 and fp32). Asking MONAI for ``features``
    channels and classifying them here learned (0.78–0.85 after 100 steps). Dropout is off by
    default, as in the V-Net paper (Milletari et al. 2016): MONAI's 0.5 slowed learning on small
    training sets (validation liver Dice 0.85 vs 0.89 after 125 steps at 32³).
    """

    def __init__(
        self, in_channels: int, classes: int, features: int = 16, dropout: float = 0.0
    ) -> None:
        super().__init__()
        from monai.networks.nets import VNet as MonaiVNet

        self.features = MonaiVNet(
            spatial_dims=3, in_channels=in_channels, out_channels=features,
            dropout_prob_down=dropout, dropout_prob_up=(dropout, dropout),
        )  # fmt: skip
        self.head = nn.Conv3d(features, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def available_archs() -> list[str]:
    """Registered names; ``unet-<encoder>`` takes any encoder of smp."""
    import segmentation_models_pytorch as smp

    return [*PLAIN_ARCHS, *(SMP_PREFIX + name for name in smp.encoders.get_encoder_names())]


def is_volumetric(arch: str) -> bool:
    """True for 3-D models trained on volume shards."""
    return arch == "vnet"


def _check_arch(arch: str) -> None:
    if arch in PLAIN_ARCHS:
        return
    import segmentation_models_pytorch as smp

    names = smp.encoders.get_encoder_names()
    if not arch.startswith(SMP_PREFIX) or arch[len(SMP_PREFIX) :] not in names:
        raise UsageError(
            f"unknown arch {arch!r}; valid: unet, unet-resnet34 (UNET-TLT), vnet, or "
            f"unet-<encoder> with an smp encoder such as {', '.join(sorted(names)[:8])}, …"
        )


def build_model(
    arch: str, in_channels: int, classes: int, encoder_weights: str = "none"
) -> nn.Module:
    """Build ``arch`` for ``in_channels`` inputs and ``classes`` outputs (logits).

    ``encoder_weights``: ``none``, ``imagenet`` (smp download) or a local/``s3://`` path to an
    encoder state dict (torchvision/timm naming; a wrong key set is a ``UsageError`` naming keys).
    """
    _check_arch(arch)
    if arch in PLAIN_ARCHS:
        if encoder_weights not in ("none", "", None):
            raise UsageError(f"arch {arch!r} has no pretrained encoder; use --encoder-weights none")
        if arch == "unet":
            return PlainUNet(in_channels, classes)
        return VNet(in_channels, classes)

    import segmentation_models_pytorch as smp

    encoder = arch[len(SMP_PREFIX) :]
    if encoder_weights == "imagenet":
        try:
            # Only on explicit request: smp fetches these from its model hub.
            return smp.Unet(encoder, encoder_weights=encoder_weights, in_channels=in_channels,
                            classes=classes)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types
            raise UsageError(
                f"could not fetch imagenet weights for {encoder} ({type(exc).__name__}); "
                "offline clusters: pass --encoder-weights PATH to a state dict file"
            ) from exc
    if encoder_weights in ("none", "", None):
        return smp.Unet(encoder, encoder_weights=None, in_channels=in_channels, classes=classes)
    model = smp.Unet(encoder, encoder_weights=None, in_channels=3, classes=classes)
    load_encoder_weights(model.encoder, encoder_weights)
    # Adapt the first convolution from RGB the way smp does for its own pretrained weights.
    model.encoder.set_in_channels(in_channels, pretrained=True)
    return model


def _clean_state(state: dict) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "encoder"):
        if isinstance(state.get(key), dict):
            state = state[key]
    out = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if not key.startswith(_HEAD_KEYS):  # classification heads are not part of the encoder
            out[key] = value
    return out


def load_encoder_weights(encoder: nn.Module, uri: str) -> None:
    """Load an encoder state dict from a file or ``s3://`` URI, refusing partial loads."""
    try:
        data = storage.read_bytes(uri)
    except (FileNotFoundError, OSError) as exc:
        raise UsageError(f"--encoder-weights {uri}: cannot read the file ({exc})") from exc
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors
        raise UsageError(f"--encoder-weights {uri}: not a torch state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise UsageError(f"--encoder-weights {uri}: expected a state dict, got {type(state)}")
    state = _clean_state(state)
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise UsageError(
            f"--encoder-weights {uri}: keys do not match the encoder; "
            f"missing {missing[:10]}{'…' if len(missing) > 10 else ''} "
            f"({len(missing)}), unexpected {unexpected[:10]}"
            f"{'…' if len(unexpected) > 10 else ''} ({len(unexpected)})"
        )
    shapes = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if shapes:
        raise UsageError(f"--encoder-weights {uri}: tensor shapes differ for {shapes[:10]}")
    encoder.load_state_dict(state, strict=True)
