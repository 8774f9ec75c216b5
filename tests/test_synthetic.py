"""The synthetic quickstart task: language-decisive by construction, and the demo runs end to end."""

import json

import torch

from vla.bench.synthetic import make_scenes, reached, run_demo, swap_instructions


def test_scenes_are_deterministic_and_language_decisive():
    a, b = make_scenes(64, seed=3), make_scenes(64, seed=3)
    assert torch.equal(a.images, b.images) and a.instructions == b.instructions
    assert a.images.shape == (64, 3, 96, 96) and a.actions.shape == (64, 5, 2)
    assert torch.allclose(a.actions[:, -1], a.targets)
    # the named color is drawn at the target: its pixel there has that color
    for i in range(8):
        color = a.colors[i][int(a.goal[i])]
        assert color in a.instructions[i]
        x, y = ((a.targets[i] + 1) / 2 * 95).round().long().tolist()
        assert a.images[i, :, y, x].max() > 0.5
    # a policy that ignores language (always the first square) is right ~1/3 of the time
    big = make_scenes(600, seed=4)
    blind = reached(big.centers[:, 0], big.targets).float().mean().item()
    assert 0.25 < blind < 0.42
    texts, new_goal = swap_instructions(big)
    assert (new_goal != big.goal).all()
    assert not reached(big.centers[torch.arange(600), new_goal], big.targets).any()  # distinct places


def test_demo_runs_end_to_end_and_saves(tmp_path):
    results = run_demo(minutes=0.02, train_scenes=32, eval_scenes=8, batch_size=4, out_dir=str(tmp_path))
    for key in ("success", "swapped_success_new_goal", "nfe", "train_steps", "decode_ms_per_chunk"):
        assert key in results
    assert results["train_steps"] >= 1 and results["nfe"] == 10
    assert json.loads((tmp_path / "results.json").read_text())["nfe"] == 10
    assert (tmp_path / "model.safetensors").stat().st_size > 1e6 and (tmp_path / "tokenizer.json").exists()
