"""The mission promise, end to end: collect -> train -> evaluate, and the policy follows language.

A mini version of the README's main job (`vla.envs.pipeline.run_pipeline`) on the tabletop
`reach` family: scripted demos into a LeRobotDataset, the real lerobot-train loop, closed-loop
evaluation on seeds disjoint from the demos, with fixed seeds throughout.

What a policy cannot fake: every `reach` scene holds all three zones and the goal is drawn
uniformly, so a policy that ignores the instruction succeeds in at most ~1/3 of episodes
(it can head for one zone) and random actions in ~0 (the random anchor, measured on the
same seeds). The test asserts the lower end of the 95% Wilson interval above 1/3, and, with
each instruction swapped for another zone of the same scene, that success follows the new
instruction rather than the scene's original goal.
"""

import pytest

from vla.envs.pipeline import PipelineConfig, run_pipeline

LANGUAGE_BLIND_CEILING = 100.0 / 3  # % of reach episodes a policy ignoring the instruction can solve


@pytest.mark.slow
def test_tiny_policy_learns_to_follow_the_instruction(tmp_path):
    summary = run_pipeline(PipelineConfig(
        out=str(tmp_path / "pipeline"), tasks="reach", episodes_per_task=60, steps=700, batch_size=32,
        eval_episodes=30, seed=0, language_ablation=True, progress=False,
        train_args=("--log_freq=100",),
    ))
    low, _ = summary["success_ci95"]
    random = summary["anchors"]["random"]
    expert = summary["anchors"]["expert"]
    print(summary)
    assert expert["pc_success"] >= 95.0, expert
    assert random["pc_success"] <= 10.0, random
    assert low > LANGUAGE_BLIND_CEILING, f"success {summary['pc_success']:.1f}% [{low:.1f}, ..] is not above 1/3"
    ablation = summary["language_ablation"]
    assert ablation["pc_success_swapped_instruction"] > 2 * ablation["pc_success_original_goal"], ablation
    assert ablation["success_ci95"][0] > LANGUAGE_BLIND_CEILING, ablation
