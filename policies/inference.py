"""One way to load a saved policy and run it: evaluation, the policy server and robot adapters.

`load_pretrained(path)` reads a `pretrained_model` directory: the policy (ours, `llada_vla`,
whose decoder, step count and threshold may be switched and whose inference speed-ups
apply; or any LeRobot policy type, e.g. `act` for baselines) and the pre/post processors
saved with it. `PolicyRunner.predict(obs)` takes observations as our envs and LeRobot's
rollouts give them (numpy, batched: `pixels` (a {camera: (B, H, W, 3) uint8} dict, or one
array for LeRobot's single-camera `observation.image`), `agent_pos` (B, S) and `task`, a
list of instructions) and returns (B, H, D) actions in the robot's units, through
LeRobot's own `preprocess_observation` and the checkpoint's processors: every caller
sees the actions `lerobot-eval` would take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.envs.utils import preprocess_observation
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from lerobot.policies.pretrained import PreTrainedPolicy

import vla.device

from .modeling_llada_vla import LLaDAVLAPolicy


class PolicyRunner:
    """A loaded policy with its processors: env-style numpy observations -> action chunks."""

    def __init__(self, policy: PreTrainedPolicy, preprocessor: Any, postprocessor: Any, path: str | None = None):
        self.policy, self.pre, self.post, self.path = policy.eval(), preprocessor, postprocessor, path

    @property
    def config(self) -> PreTrainedConfig:
        return self.policy.config

    def predict(self, obs: dict[str, Any]) -> np.ndarray:
        """(B, H, D) float32 actions in the robot's units for a batch of observations (see the module doc)."""
        batch = preprocess_observation({k: obs[k] for k in ("pixels", "agent_pos") if k in obs})
        missing = sorted(set(self.config.image_features) - set(batch))
        if missing:
            raise ValueError(f"the policy expects images {missing} but the observation gives {sorted(batch)}; "
                             "evaluate with the camera / suite the policy was trained on (--camera)")
        batch["task"] = list(obs["task"])
        with torch.inference_mode():
            actions = self.post(self.policy.predict_action_chunk(self.pre(batch)))  # (B, H, D)
        return actions.float().cpu().numpy()


def load_pretrained(path: str | Path, device: str | None = None, decoder: str | None = None,
                    decode_steps: int | None = None, threshold: float | None = None, bf16_weights: bool = False,
                    compile: bool = False, allow_emulated_bf16: bool = False) -> PolicyRunner:
    """Load a `pretrained_model` directory (a LeRobot policy and its processors) for inference.

    decoder / decode_steps / threshold switch a `llada_vla` checkpoint's decoder;
    bf16_weights / compile are its inference speed-ups (`prepare_for_inference`). bf16 weights
    on a CPU without native bf16 matmuls are refused (`ValueError`, before any weight is read)
    unless `allow_emulated_bf16`: there they decode slower than fp32.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no config.json; pass the checkpoint's pretrained_model dir "
                                "(e.g. outputs/train/x/checkpoints/last/pretrained_model)")
    config = PreTrainedConfig.from_pretrained(path)
    if device:
        config.device = device
    emulated = bf16_weights and vla.device.emulated_bf16_warning("--bf16-weights", config.device)
    if emulated and not allow_emulated_bf16:
        raise ValueError(f"{emulated}; serve in fp32 (drop --bf16-weights), or pass --allow-emulated-bf16")
    policy = get_policy_class(config.type).from_pretrained(path, config=config)
    if isinstance(policy, LLaDAVLAPolicy):
        policy.set_decoder(decoder, decode_steps, threshold)
        policy.prepare_for_inference(bf16_weights, compile)
    elif decoder is not None or decode_steps is not None or threshold is not None or bf16_weights or compile:
        raise ValueError(f"--decoder / --decode-steps / --threshold / --bf16-weights / --compile apply to llada_vla "
                         f"checkpoints; {path} is a {config.type!r} policy")
    overrides = {"device_processor": {"device": str(config.device)}}
    pre, post = make_pre_post_processors(config, pretrained_path=str(path), preprocessor_overrides=overrides)
    return PolicyRunner(policy, pre, post, str(path))
