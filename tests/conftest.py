"""Shared fixtures: a tokenizer trained on a few instructions and small model configs."""

import os

import vla.envs  # noqa: F401  (sets MUJOCO_GL=egl unless set: the one place)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from vla.model import VLAConfig
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


TINY = {"vision_kwargs": {"depth": 4}}  # the tiny CPU size (~5M parameters): every other model field at its default
SMALL = {"image_size": 32, "vision_kwargs": {"depth": 1}, "d_model": 64, "n_layers": 2, "n_heads": 4, "mlp_hidden": 128,
         "chunk_size": 3, "action_dim": 4}


def small_config(tokenizer, **overrides) -> VLAConfig:
    """A fast configuration for unit tests: flat model fields (`vla.model.flat_names`), as presets write them."""
    return VLAConfig.from_flat({**SMALL, **tokenizer.config_fields()}, **overrides)
