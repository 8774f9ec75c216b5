"""An evaluation that explains itself: per-episode table, links relative to the report,
labelled plot bars (0% visible), and videos larger than the policy's input with the
instruction and outcome written on them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vla.envs.eval_report import EpisodeResult, annotate_frames, build_eval_info, episodes_table, success_figure
from vla.envs.evaluation import EvalConfig, evaluate, load_policy


def _episode(task, i, success, ended_by, video=None, **kw):
    return EpisodeResult(task=task, task_group="tabletop", task_id=0 if task == "push" else 1, episode_index=i,
                         seed=100 + i, instruction=f"{task} the red block", success=success, sum_reward=float(success),
                         max_reward=float(success), length=10 + i, video_path=video, ended_by=ended_by, **kw)


def _info(episodes, anchors=None):
    info = build_eval_info(episodes, 1.0, {"n_calls": 0}, {"name": "policy"},
                           {"suite": "tabletop", "tasks": "x", "n_episodes": 2, "seed_base": 100, "episode_length": 50,
                            "n_envs": 1, "execution": "first 5"})
    if anchors:
        info["anchors"] = anchors
    return info


def test_episode_table_gives_seed_instruction_length_outcome_and_why():
    eps = [_episode("push", 0, False, "wrong contact: touched the blue block"), _episode("push", 1, True, "success"),
           _episode("touch", 0, False, "timeout", video="out/videos/touch_ep000.mp4")]
    rows = episodes_table(_info(eps), base="out")
    assert rows[0].startswith("| task | seed | instruction | length | outcome | why it ended |")
    body = [r.split(" | ") for r in rows[2:]]
    assert len(body) == 3
    assert body[0][:6] == ["| push", "100", "push the red block", "10", "failure", "wrong contact: touched the blue block"]
    assert body[1][4:6] == ["success", "success"]
    assert body[2][4:6] == ["failure", "timeout"] and "(videos/touch_ep000.mp4)" in rows[-1]
    swapped = [_episode("touch", 0, True, "success", original_instruction="touch the green block",
                        success_original=False)]
    assert "| replaced goal reached |" in episodes_table(_info(swapped))[0]
    assert episodes_table(_info(swapped))[2].split(" | ")[6] == "no"


def test_plot_labels_every_bar_and_shows_zero_bars():
    eps = [_episode("push", 0, False, "timeout"), _episode("push", 1, False, "timeout"),
           _episode("touch", 0, True, "success"), _episode("touch", 1, False, "timeout")]
    anchor = {"expert": {"per_task": {"push": {"pc_success": 100.0, "success_ci95": [34.2, 100.0]},
                                      "touch": {"pc_success": 100.0, "success_ci95": [34.2, 100.0]}},
                         "overall": {"pc_success": 100.0, "success_ci95": [51.0, 100.0]}}}
    fig = success_figure(_info(eps, anchor))
    ax = fig.axes[0]
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == sorted(["0", "50", "100", "100"])  # one value per bar: policy x 2 tasks, anchor x 2 tasks
    zero = [p for p in ax.patches if p.get_height() == 0]
    assert len(zero) == 1 and zero[0].get_linewidth() > 0  # drawn as a line in its color ...
    assert ax.get_ylim()[0] < 0  # ... above the axis, not hidden in it


def test_annotated_frames_carry_the_instruction_and_the_outcome_color():
    frames = [np.full((128, 128, 3), 128, np.uint8) for _ in range(3)]
    ok = annotate_frames(frames, "touch the red block", "success (3 steps)", True, hold=2)
    bad = annotate_frames(frames, "touch the red block", "timeout (3 steps)", False)
    assert len(ok) == 5 and len(bad) == 3 and ok[0].shape == (128, 128, 3)
    assert (ok[0][:10] != 128).any() and (ok[0][-10:] != 128).any()  # text bands at top and bottom
    assert (ok[0][50:70] == 128).all()  # the scene itself is untouched
    right = slice(64, 128)  # the outcome is written at the bottom right
    g_ok, r_ok = ok[0][-14:, right, 1].astype(int), ok[0][-14:, right, 0].astype(int)
    g_bad, r_bad = bad[0][-14:, right, 1].astype(int), bad[0][-14:, right, 0].astype(int)
    assert (g_ok - r_ok).max() > 60 and (r_bad - g_bad).max() > 60  # green for success, red for failure
    plain = annotate_frames(frames, "push the blue block", "success (3 steps)", True)
    assert not np.array_equal(plain[0][:12], ok[0][:12])  # the instruction is what the top band shows


def test_report_links_resolve_from_its_folder_and_videos_are_larger_than_the_input(tmp_path, monkeypatch):
    import imageio.v2 as imageio

    monkeypatch.chdir(tmp_path)  # out_dir relative to the working directory, as on the command line
    cfg = EvalConfig(suite="tabletop", tasks="touch", n_episodes=2, n_envs=2, async_envs=False, progress=False,
                     episode_length=12, max_videos=2, video_size=128, out_dir="runs/eval")
    info = evaluate(cfg, load_policy("random"))
    out = tmp_path / "runs" / "eval"
    report = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+\.mp4)\)", report)
    assert len(links) == 4  # per-episode table and the video list, two episodes each
    assert all(not Path(v).is_absolute() and (out / v).is_file() for v in links)
    episodes = report.split("## Episodes")[1]
    for seed in info["per_task"][0]["metrics"]["seeds"]:
        assert f"| touch | {seed} | touch the " in episodes
    for why in info["per_task"][0]["metrics"]["ended_by"]:
        assert why in ("success", "timeout") or why.startswith("wrong contact: "), why
        assert f" | {why} | " in episodes
    frames = imageio.mimread(out / links[0])
    assert frames[0].shape == (128, 128, 3) and cfg.height == 96  # rendered for the video, not the policy
    assert len(frames) >= info["per_task"][0]["metrics"]["episode_lengths"][0] + 1 + cfg.fps  # + held ending
