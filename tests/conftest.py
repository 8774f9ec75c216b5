"""Shared fixtures: a tokenizer trained on a few instructions and a small model config."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from vla.presets import make_config
from vla.text_tokenizer import TextTokenizer

INSTRUCTIONS = [
    "push the red block onto the green zone",
    "touch the blue block",
    "move the yellow cube to the left",
    "press the button",
]


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(INSTRUCTIONS, vocab_size=96)


def small_config(tokenizer, **overrides):
    """A fast configuration for unit tests (the `tiny` preset, shrunk)."""
    base = {
        "vision": {"encoder": "vit_tiny_patch16_224", "image_size": 32, "encoder_kwargs": {"depth": 1}},
        "backbone": {"d_model": 64, "n_layers": 2, "n_heads": 4, "mlp_hidden": 128},
        "chunk_size": 3,
        "action_dim": 4,
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return make_config("tiny", tokenizer, **base)
