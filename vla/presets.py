"""Named model presets (scale is a config value, DESIGN.md section 6).

`tiny` is the CPU preset used by tests, CI and the README demo (~5M parameters at the
defaults: ViT-tiny with 4 blocks at 96 px -> 36 image tokens, a 4-layer d=256 LLaDA
backbone). LeRobot-level presets (dataset, training schedule) live in `configs/`.
"""

from __future__ import annotations

import copy

from vla.backbone import BackboneConfig
from vla.decoders import DecodeConfig
from vla.model import VLAConfig
from vla.text_tokenizer import TextTokenizer
from vla.vision import VisionConfig

PRESETS: dict[str, dict] = {
    "tiny": {
        "vision": {"encoder": "vit_tiny_patch16_224", "image_size": 96, "encoder_kwargs": {"depth": 4}},
        "backbone": {"d_model": 256, "n_layers": 4, "n_heads": 4, "mlp_hidden": 704},
        "decoder": {"name": "had", "steps": 10},
    },
    "llada8b": {  # the paper's scale: SigLIP so400m at 384 px + LLaDA-8B (weights from a local dir)
        "vision": {"encoder": "vit_so400m_patch14_siglip_384", "image_size": 384},
        "backbone": {"d_model": 4096, "n_layers": 32, "n_heads": 32, "mlp_hidden": 12288,
                     "vocab_size": 126464, "rope_theta": 500000.0},
        "decoder": {"name": "had", "steps": 10},
    },
}


def make_config(name: str, tokenizer: TextTokenizer | None = None, **overrides) -> VLAConfig:
    """Preset `name` with `overrides` (top-level VLAConfig fields or nested dicts merged).

    With a tokenizer, the text vocabulary size and special ids are taken from it.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose from {sorted(PRESETS)}")
    d = copy.deepcopy(PRESETS[name])
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key].update(value)
        else:
            d[key] = value
    if tokenizer is not None:
        d.setdefault("backbone", {})["vocab_size"] = tokenizer.vocab_size
        d.update(pad_token_id=tokenizer.pad_id, sep_token_id=tokenizer.sep_id, mask_token_id=tokenizer.mask_id)
    d["vision"] = VisionConfig(**d.get("vision", {}))
    d["backbone"] = BackboneConfig(**d.get("backbone", {}))
    d["decoder"] = DecodeConfig(**d.get("decoder", {}))
    return VLAConfig(**d)
