"""Meta-World comparison harness (vla.bench.compare) end to end at toy scale: real demos, the
real LLaDA-VLA and LeRobot ACT trainings under a wall-clock budget, the same evaluator and
seeds for both, and the BENCHMARKS section built from what was measured."""

import json

import pytest

from vla.bench.compare import POLICIES, SECTION, CompareConfig, compare, compare_section


@pytest.mark.slow
def test_compare_trains_each_policy_for_the_budget_and_evaluates_on_the_same_seeds(tmp_path):
    cfg = CompareConfig(out=str(tmp_path / "cmp"), tasks="reach-v3", episodes_per_task=2, minutes=0.05,
                        batch_size=4, eval_episodes=1, policies=("llada_had", "act"), max_videos=0,
                        progress=False)
    r = compare(cfg)
    assert set(r["trained"]) == {"llada_had", "act"}
    for key, t in r["trained"].items():
        assert t["steps"] >= 1 and t["params"] > 0, (key, t)
        assert "--max-minutes=0.05" in t["command"]
    llada, act = r["evals"]["llada_had"], r["evals"]["act"]
    assert llada["policy"]["name"] == "llada_vla" and act["policy"]["name"] == "act"
    seeds = [[t["metrics"]["seeds"] for t in info["per_task"]] for info in (llada, act)]
    assert seeds[0] == seeds[1]  # the same unseen seeds for every policy
    assert set(llada["anchors"]) == {"expert", "random"} and llada["anchors"]["expert"]["overall"]["pc_success"] == 100
    section = compare_section(r, "python scripts/results_metaworld.py --minutes 0.05", "test")
    assert section.startswith(SECTION)
    assert POLICIES["act"][0] in section and "reach-v3" in section and "expert (anchor)" in section
    # a second run finds everything done and returns the same results without training again
    again = compare(cfg)
    assert again["trained"] == json.loads(json.dumps(r["trained"]))
    for key in r["evals"]:
        assert again["evals"][key]["overall"]["pc_success"] == r["evals"][key]["overall"]["pc_success"]
        assert [t["metrics"]["seeds"] for t in again["evals"][key]["per_task"]] == seeds[0]
