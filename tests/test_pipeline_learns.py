"""The pipeline end to end, on fixed seeds: collect -> train -> evaluate, and what it learned.

A mini version of the README's main job (`vla.envs.pipeline.run_pipeline`) on the easy
tabletop family `reach_slots`: 150 scripted demos into a LeRobotDataset, the real
lerobot-train loop on the `tabletop_micro_cpu` preset (~9 min on 2 CPU cores), closed-loop
evaluation on seeds disjoint from the demos, with the expert and random anchors on the
same seeds.

What it asserts: the anchors bound the task (expert ~100%, random ~0%), and the trained
policy's 95% Wilson interval lies wholly above the random anchor's. What it does not yet
assert, because it does not hold at this budget: beating the ~1/3 a language-blind policy
can reach (every scene holds all three zones). Measured here (AMD EPYC, 2 cores): 36.7%
[21.9, 54.5] with this preset, and the policy's first-step actions only begin to depend on
the instruction; see BENCHMARKS.md ("Results: tabletop") and docs/evaluation.md.
"""

import pytest

from vla.envs.pipeline import PipelineConfig, run_pipeline


@pytest.mark.slow
def test_mini_pipeline_trains_a_policy_that_beats_random(tmp_path):
    summary = run_pipeline(PipelineConfig(
        out=str(tmp_path / "pipeline"), tasks="reach_slots", episodes_per_task=150, steps=2000, batch_size=32,
        eval_episodes=30, seed=0, preset="configs/tabletop_micro_cpu.json", language_ablation=False,
        progress=False, train_args=("--log_freq=200",),
    ))
    print(summary)
    expert, random = summary["anchors"]["expert"], summary["anchors"]["random"]
    assert expert["pc_success"] >= 95.0, expert
    assert random["pc_success"] <= 10.0, random
    low, _ = summary["success_ci95"]
    assert low > random["success_ci95"][1], (summary["pc_success"], summary["success_ci95"], random)
    assert summary["train_s"] < 20 * 60 and (tmp_path / "pipeline" / "eval" / "success.png").is_file()
