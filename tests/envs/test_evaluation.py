"""The evaluator: Wilson intervals, anchors, determinism, eval_info schema, a saved llada_vla policy end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla.envs.eval_report import wilson_interval
from vla.envs.evaluation import EvalConfig, check_seeds_disjoint, evaluate, load_policy
from vla.policies.controller import ActionSchedule

ROOT = Path(__file__).parents[2]
Z = 1.959963984540054


def closed_form(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    p = k / n
    center, half = p + Z**2 / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return (center - half) / (1 + Z**2 / n), (center + half) / (1 + Z**2 / n)


def test_wilson_interval_matches_the_closed_form_and_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # 0/10 -> [0, 27.8%]
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    for k, n in [(0, 10), (10, 10), (5, 10), (3, 7), (49, 50)]:
        assert wilson_interval(k, n) == pytest.approx(closed_form(k, n), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(11, 10)


def test_action_schedule_runs_n_steps_or_ensembles_whole_overlapping_chunks():
    """The two ways evaluation executes chunks (the controller's `ActionSchedule`)."""
    plain = ActionSchedule(2, "latest")
    assert plain.remaining(0) == 0
    plain.add(np.arange(5)[:, None] * np.ones((5, 2)), 0, 0)
    assert [plain.pop(t)[0] for t in range(2)] == [0, 1] and plain.remaining(2) == 0
    ens = ActionSchedule(None, "exp", math.log(2))  # every action of a chunk; weights 1, 1/2 (oldest first)
    ens.add(np.array([[0.0], [3.0], [9.0]]), 0, 0)
    assert ens.pop(0)[0] == 0.0
    ens.add(np.array([[6.0], [9.0], [9.0]]), 1, 1)
    assert ens.pop(1)[0] == pytest.approx((3.0 * 1 + 6.0 * 0.5) / 1.5)  # old chunk's step 1, new chunk's step 0
    assert ens.pop(2)[0] == pytest.approx((9.0 * 1 + 9.0 * 0.5) / 1.5) and ens.remaining(3) == 1


def run(policy, tmp_path=None, **kw):
    cfg = EvalConfig(**{"suite": "tabletop", "tasks": "touch", "n_episodes": 4, "n_envs": 2, "async_envs": False,
                        "progress": False, "out_dir": str(tmp_path) if tmp_path else None, **kw})
    return evaluate(cfg, load_policy(policy))


def test_expert_anchor_succeeds_and_random_anchor_does_not():
    expert = run("expert", tasks="all", n_episodes=5)
    assert expert["overall"]["pc_success"] >= 95
    assert all(t["metrics"]["pc_success"] >= 80 for t in expert["per_task"])  # push: ~1% of scenes fail
    assert expert["overall"]["mean_episode_length"] < 60  # it succeeds early, not at the time limit
    random = run("random", tasks="all", n_episodes=5)
    assert random["overall"]["pc_success"] <= 30
    assert random["overall"]["success_ci95"][0] < expert["overall"]["success_ci95"][0]


def test_same_seeds_give_the_same_results_in_worker_processes_too():
    a = run("random", tasks="reach", n_episodes=4)
    b = run("random", tasks="reach", n_episodes=4, n_envs=2, async_envs=True)  # spawned workers, other schedule
    for key in ("successes", "sum_rewards", "episode_lengths", "seeds"):
        assert a["per_task"][0]["metrics"][key] == b["per_task"][0]["metrics"][key]
    assert a["per_task"][0]["metrics"]["seeds"] == [1_000_000_000 + i for i in range(4)]
    c = run("random", tasks="reach", n_episodes=4, seed_base=7)
    assert c["per_task"][0]["metrics"]["episode_lengths"] != a["per_task"][0]["metrics"]["episode_lengths"] or \
        c["per_task"][0]["metrics"]["sum_rewards"] != a["per_task"][0]["metrics"]["sum_rewards"]


def test_swapped_instructions_score_both_goals():
    """The expert follows the (swapped) instruction: swapped goal ~100%, original goal ~0%."""
    info = run("expert", tasks="touch,reach", n_episodes=4, swap_instructions=True)
    o = info["overall"]
    assert o["pc_success"] >= 95 and o["pc_success_original_goal"] <= 5
    m = info["per_task"][0]["metrics"]
    assert len(m["successes_original_goal"]) == 4 and "success_ci95_original_goal" in m
    normal = run("expert", tasks="touch", n_episodes=4)["per_task"][0]["metrics"]
    assert m["original_instructions"] == normal["instructions"]  # same seeds -> same scenes and original goals
    assert all(s != o for s, o in zip(m["instructions"], m["original_instructions"], strict=True))
    assert all(i.startswith("touch the") for i in m["instructions"])  # another goal of the same family
    with pytest.raises(ValueError, match="tabletop"):
        EvalConfig(suite="metaworld", tasks="reach-v3", swap_instructions=True)


def test_eval_info_follows_lerobots_schema(tmp_path):
    info = run("expert", tmp_path, tasks="touch,reach", n_episodes=2)
    on_disk = json.loads((tmp_path / "eval_info.json").read_text())
    assert set(on_disk) >= {"per_task", "per_group", "overall"}
    assert set(on_disk["overall"]) >= {"pc_success", "avg_sum_reward", "avg_max_reward", "n_episodes", "eval_s",
                                       "eval_ep_s", "video_paths", "success_ci95", "latency_ms"}
    task = on_disk["per_task"][0]
    assert set(task) >= {"task_group", "task_id", "metrics"}
    assert set(task["metrics"]) >= {"sum_rewards", "max_rewards", "successes", "video_paths"}
    assert [t["task_id"] for t in on_disk["per_task"]] == [1, 2]  # stable ids: FAMILIES order, as demo collection
    assert set(on_disk["per_group"]["tabletop"]) >= {"avg_sum_reward", "pc_success", "n_episodes", "video_paths"}
    assert on_disk["overall"]["n_episodes"] == 4 == info["overall"]["n_episodes"]
    assert "| touch | tabletop | 2 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "success.png").read_bytes()[:4] == b"\x89PNG"


def test_anchors_share_the_report_and_the_seeds(tmp_path):
    cfg = EvalConfig(suite="tabletop", tasks="touch,reach", n_episodes=3, n_envs=2, async_envs=False, progress=False,
                     out_dir=str(tmp_path))
    info = evaluate(cfg, load_policy("random"), anchors=("expert", "random"))
    anchors = json.loads((tmp_path / "eval_info.json").read_text())["anchors"]
    assert set(anchors) == {"expert", "random"}
    assert anchors["expert"]["overall"]["pc_success"] >= 95 and anchors["expert"]["overall"]["n_episodes"] == 6
    assert set(anchors["expert"]["per_task"]) == {"touch", "reach"}
    # the random anchor on the same seeds is the same rollout as the random policy itself
    assert anchors["random"]["overall"]["pc_success"] == info["overall"]["pc_success"]
    report = (tmp_path / "report.md").read_text()
    assert "## Anchors (same tasks and seeds)" in report and "| touch | " in report.split("## Anchors")[1]
    assert (tmp_path / "success.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="choose from"):
        evaluate(cfg, load_policy("random"), anchors=("oracle",))


def test_metaworld_tasks_report_per_difficulty_group():
    info = run("expert", suite="metaworld", tasks="reach-v3,hand-insert-v3", n_episodes=1)
    assert set(info["per_group"]) == {"easy", "hard"}
    assert [(t["task"], t["task_group"]) for t in info["per_task"]] == [("hand-insert-v3", "hard"), ("reach-v3", "easy")]
    assert info["overall"]["pc_success"] == 100.0


def test_seed_check_against_a_demo_dataset(tmp_path):
    (tmp_path / "meta").mkdir()
    record = {"episodes": [{"task_name": "push", "seed": 0}, {"task_name": "touch", "seed": 100_000}]}
    (tmp_path / "meta" / "vla_recorder.json").write_text(json.dumps(record))
    check_seeds_disjoint([1_000_000_000 + i for i in range(100)], tmp_path)  # the default protocol passes
    with pytest.raises(ValueError, match="another --seed-base"):
        check_seeds_disjoint([100_000 + i for i in range(10)], tmp_path)  # a naive base clashes with touch demos


def test_unknown_names_list_the_valid_choices():
    with pytest.raises(ValueError, match="choose a family"):
        run("expert", tasks="stack")
    with pytest.raises(ValueError, match="neither one of"):
        load_policy("no/such/dir")


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """A tiny untrained llada_vla policy for the tabletop features, saved like a checkpoint."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors

    from vla.envs.tabletop import FAMILIES, all_goals
    from vla.policies import LLaDAVLAConfig
    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy
    from vla.text_tokenizer import TextTokenizer

    torch.manual_seed(0)
    cfg = LLaDAVLAConfig(device="cpu", push_to_hub=False, image_size=32, vision_kwargs={"depth": 1}, d_model=64,
                         n_layers=2, n_heads=4, mlp_hidden=128, use_bf16=False, chunk_size=5, n_action_steps=5,
                         decode_steps=4)
    cfg.input_features = {"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
                          "observation.state": PolicyFeature(FeatureType.STATE, (4,))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (4,))}
    texts = [g.instruction for f in FAMILIES for g in all_goals(f)]
    cfg.tokenizer_json = TextTokenizer.train(texts, vocab_size=128).to_json()
    stats = {"observation.state": {"mean": np.zeros(4), "std": np.ones(4)},
             "action": {"q01": -np.ones(4), "q99": np.ones(4), "min": -np.ones(4), "max": np.ones(4)}}
    policy = LLaDAVLAPolicy(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    path = tmp_path_factory.mktemp("ckpt") / "pretrained_model"
    policy.save_pretrained(path)
    pre.save_pretrained(path)
    post.save_pretrained(path)
    return path


def test_saved_llada_policy_evaluates_and_writes_every_output(tiny_policy, tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "eval.py"), f"--policy.path={tiny_policy}", "--suite", "tabletop",
         "--tasks", "touch", "--n-episodes", "2", "--n-envs", "2", "--episode-length", "20", "--max-videos", "1",
         "--decoder", "low_confidence", "--decode-steps", "2", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    info = json.loads((out / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 2
    assert info["policy"]["decoder"] == "low_confidence" and info["policy"]["decode_steps"] == 2
    lat = info["overall"]["latency_ms"]
    assert lat["n_calls"] >= 2 * 20 // 5 // 2 and 0 < lat["p50"] <= lat["p99"]
    videos = list((out / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    import imageio.v2 as imageio

    assert imageio.get_reader(videos[0]).get_data(0).shape == (256, 256, 3)  # --video-size default, input 96
    assert info["overall"]["video_paths"] == [str(videos[0])]
    assert (out / "report.md").is_file() and (out / "success.png").is_file()


def test_decoder_override_and_temporal_ensembling_on_a_loaded_policy(tiny_policy):
    policy = load_policy(str(tiny_policy), decoder="ar")
    assert policy.policy.model.cfg.decoder.name == "ar" and policy.policy.model.cfg.decoder.steps is None
    cfg = EvalConfig(suite="tabletop", tasks="reach", n_episodes=1, n_envs=1, episode_length=6, temporal_ensemble=0.01,
                     progress=False)
    info = evaluate(cfg, load_policy(str(tiny_policy)))
    assert info["overall"]["latency_ms"]["n_calls"] == 6  # ensembling queries the policy every step
    assert info["policy"]["mean_nfe_per_chunk"] == 4.0  # the checkpoint decodes in 4 forwards per chunk
    assert info["per_task"][0]["metrics"]["episode_lengths"] == [6]
    with pytest.raises(ValueError, match="choose from"):
        load_policy(str(tiny_policy), decoder="beam")


def test_threshold_and_bf16_weights_on_a_loaded_policy(tiny_policy):
    import torch

    policy = load_policy(str(tiny_policy), decoder="threshold", threshold=0.5, bf16_weights=True)
    model = policy.policy.model
    assert (model.cfg.decoder.name, model.cfg.decoder.threshold) == ("threshold", 0.5)
    assert model.backbone.wte.weight.dtype == torch.bfloat16 and model.action_tokenizer.low.dtype == torch.float32
    info = evaluate(EvalConfig(suite="tabletop", tasks="reach", n_episodes=1, n_envs=1, episode_length=5,
                               progress=False), policy)
    assert info["policy"]["threshold"] == 0.5 and info["per_task"][0]["metrics"]["episode_lengths"] == [5]


def test_language_blind_anchor_scores_its_ceiling_and_the_sweep_no_more():
    """The blind anchor (the expert, for a goal drawn without reading the instruction) lands
    within its Wilson interval of 1/(goals per scene): 1/3 for touch and reach, 1/9 for push.
    The sweep over every target, which a rule without wrong-contact failures would pass at
    100%, is held to the same ceiling."""
    blind = run("blind", tasks="push,touch,reach,reach_slots,reach_fixed", n_episodes=90)
    for t in blind["per_task"]:
        low, high = t["metrics"]["success_ci95"]
        ceiling = 100 / 9 if t["task"] == "push" else 100 / 3
        assert low <= ceiling <= high, (t["task"], t["metrics"]["pc_success"], low, high)
    sweep = run("sweep", tasks="touch,reach_fixed", n_episodes=90)
    for t in sweep["per_task"]:
        low, high = t["metrics"]["success_ci95"]
        assert low <= 100 / 3 <= high, (t["task"], t["metrics"]["pc_success"], low, high)
        assert any(e.startswith("wrong contact") for e in t["metrics"]["ended_by"])


class RecordingPolicy:
    """Zero actions; records the instructions it is given."""

    name, n_action_steps, needs_images, scripted = "recorder", 5, False, None

    def __init__(self):
        self.seen = []

    def reset(self, slot, seed):
        pass

    def act(self, obs, slots):
        self.seen += list(obs["task"])
        return np.zeros((len(slots), self.n_action_steps, 4))

    def describe(self):
        return {"policy": self.name}


def test_an_instructions_file_replaces_the_trained_instruction_by_seed():
    phrasings = {"reach-v3": ["go to the red dot", "touch the goal marker"], "push-v3": ["shove the puck to the dot"]}
    policy = RecordingPolicy()
    cfg = EvalConfig(suite="metaworld", tasks="reach-v3,push-v3", n_episodes=2, n_envs=1, async_envs=False,
                     episode_length=10, progress=False, instructions=phrasings)
    info = evaluate(cfg, policy)
    assert set(policy.seen) == {"go to the red dot", "touch the goal marker", "shove the puck to the dot"}
    assert info["overall"]["n_episodes"] == 4


@pytest.mark.parametrize("instructions, match", [
    ({"reach-v3": ["x"], "fly-v3": ["y"]}, r"not evaluated here: \['fly-v3'\]"),
    ({"reach-v3": []}, r"non-empty lists"),
    ({"reach-v3": ["ok", ""]}, r"non-empty lists"),
    ({}, r"no phrasings for \['reach-v3'\]"),
    (["reach-v3"], r"must map task -> list of phrasings"),
])
def test_an_invalid_instructions_file_is_refused_naming_the_problem(instructions, match):
    with pytest.raises(ValueError, match=match):
        EvalConfig(suite="metaworld", tasks="reach-v3", instructions=instructions)
    with pytest.raises(ValueError, match="for Meta-World tasks"):
        EvalConfig(suite="tabletop", tasks="touch", instructions={"touch": ["x"]})
