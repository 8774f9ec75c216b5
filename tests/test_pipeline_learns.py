"""The pipeline end to end, on fixed seeds: collect -> train -> evaluate, and what it learned.

A mini version of the README's main job (`vla.bench.pipeline.run_pipeline`) on one tabletop
family (`FAMILY`): scripted demos of every scene with each of its goals into a
LeRobotDataset, the real lerobot-train loop (`PRESET`, a fixed number of steps), then
closed-loop evaluation on seeds disjoint from the demos, with the expert, language-blind
and random anchors on the same seeds, and the language ablation (every instruction swapped
for another goal of the same scene).

What it asserts (`language_following_failures`): the trained policy's success interval
lies wholly above the language-blind anchor's (the expert, for a goal drawn without reading
the instruction; episodes fail at the first wrong contact, so nothing that ignores the
instruction beats it), and with swapped instructions success moves to the goal given. The
second test shows the assertion can fail: the scripted sweep over every zone, which passed
the old rules at 100%, fails it on the same seeds.
"""

import dataclasses

import pytest

from vla.bench.pipeline import PipelineConfig, language_following_failures, run_pipeline, summarize
from vla.envs.evaluation import EvalConfig, evaluate, load_policy

FAMILY = "reach_fixed"
PRESET = "configs/tabletop_micro_cpu.json"
EVAL_EPISODES = 40


@pytest.mark.slow
def test_mini_pipeline_trains_a_policy_that_follows_the_instruction(tmp_path):
    summary = run_pipeline(PipelineConfig(
        out=str(tmp_path / "pipeline"), tasks=FAMILY, episodes_per_task=150, train_minutes=None, steps=2000,
        batch_size=32, eval_episodes=EVAL_EPISODES, seed=0, preset=PRESET, language_ablation=True, probe_scenes=10,
        progress=False, train_args=("--log_freq=200",),
    ))
    print(summary)
    expert, random = summary["anchors"]["expert"], summary["anchors"]["random"]
    assert expert["pc_success"] >= 95.0, expert
    assert random["pc_success"] <= 10.0, random
    assert language_following_failures(summary) == [], summary
    assert summary["grounding_probe"]["overall"]["score"] > summary["grounding_probe"]["overall"]["chance"]
    assert (tmp_path / "pipeline" / "eval" / "success.png").is_file()


def test_the_scripted_sweep_fails_the_language_check_on_the_same_seeds():
    """Visiting every zone in turn ignores the instruction; it must not pass for a policy
    that follows it (under the old success rule it scored 40/40 here)."""
    cfg = EvalConfig(suite="tabletop", tasks=FAMILY, n_episodes=EVAL_EPISODES, n_envs=2, progress=False)
    sweep = load_policy("sweep")
    info = evaluate(cfg, sweep, anchors=("blind",))
    swap = evaluate(dataclasses.replace(cfg, swap_instructions=True), sweep)
    failures = language_following_failures(summarize(info, swap))
    assert failures, summarize(info, swap)
    assert any("does not beat the language-blind" in f for f in failures)
