"""A checkpoint saved before the config refactor of issue 15 loads and decodes the same actions.

tests/fixtures/ckpt_v0 was written by the code at commit 92926db (`save_untrained_policy` for
the tabletop suite at a ~54k-parameter size, with keypoints, fusion token and slots and slot
embeddings on, weights doubled so that actions depend on the observation), together with the
model config it built and the actions three decoders took on the observation below
(`expected_actions.json`). Changing how a saved `config.json` becomes the model must keep both.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from vla.envs.evaluation import load_policy

CKPT = Path(__file__).parent / "fixtures" / "ckpt_v0"
EXPECTED = json.loads((CKPT / "expected_actions.json").read_text())


def observation() -> dict:
    rng = np.random.default_rng(0)
    return {"pixels": {"front": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)},
            "agent_pos": rng.normal(size=(3, 4)).astype(np.float32),
            "task": ["touch the blue block", "move the gripper to the cyan zone",
                     "push the red block onto the yellow zone"]}


@pytest.mark.parametrize("decoder", sorted(EXPECTED["actions"]))
def test_old_checkpoint_decodes_the_same_actions(decoder):
    policy = load_policy(str(CKPT), device="cpu", decoder=decoder)
    built = json.loads(json.dumps(policy.policy.model.cfg.to_dict()))  # tuples as the JSON lists
    assert built == {**EXPECTED["model_config"], "decoder": built["decoder"]}
    np.testing.assert_array_equal(policy.act(observation(), [0, 1, 2]), np.array(EXPECTED["actions"][decoder],
                                                                                  dtype=np.float32))
