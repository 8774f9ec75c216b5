"""The grounding probe: chance for a policy that ignores the instruction, ~1 for the expert."""

import numpy as np
import pytest

from vla.bench.grounding import ProbeConfig, probe_grounding, probe_table
from vla.envs.evaluation import load_policy


class SameMoveForEveryInstruction:
    """Ignores the instruction (and the image): always moves the same way, so in every scene
    it heads for one and the same target whatever it is asked."""

    name, n_action_steps, needs_images, scripted = "constant", 5, True, None

    def __init__(self, direction):
        self.direction = np.asarray(direction, np.float32)

    def reset(self, slot, seed):
        pass

    def act(self, obs, slots):
        assert len(obs["task"]) == len(slots) and len(set(obs["task"])) == len(slots)  # every goal asked
        return np.tile(self.direction, (len(slots), 5, 1))

    def describe(self):
        return {"name": self.name}


@pytest.mark.parametrize("direction", [(1.0, 0.2, 0.0, 1.0), (-0.3, 1.0, -0.5, 1.0)])
def test_a_policy_that_ignores_the_instruction_scores_exactly_chance(direction):
    result = probe_grounding(SameMoveForEveryInstruction(direction), ProbeConfig(n_scenes=4, height=48, width=48))
    for family, r in result["per_task"].items():
        assert r["score"] == pytest.approx(r["chance"]), family
        assert r["instruction_effect"] == pytest.approx(0.0, abs=1e-9), family  # the same move whatever it is asked
    assert result["per_task"]["push"]["chance"] == pytest.approx(1 / 9)
    assert result["per_task"]["touch"]["chance"] == pytest.approx(1 / 3)
    assert "| **all** |" in probe_table(result)


def test_the_expert_heads_for_the_named_target_and_the_blind_anchor_does_not():
    cfg = ProbeConfig(n_scenes=10, height=48, width=48)
    expert = probe_grounding(load_policy("expert"), cfg)
    assert expert["overall"]["score"] >= 0.95, expert["per_task"]
    assert expert["overall"]["instruction_effect"] == pytest.approx(1.0)  # the reference itself
    blind = probe_grounding(load_policy("blind"), cfg)
    assert blind["overall"]["score"] <= 0.5, blind["per_task"]
