"""Training through LeRobot's loop: CLI + wrapper, resume, SIGKILL safety, atomic checkpoints."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vla.policies.lerobot_patches import atomic_save, atomic_update_last
from vla.policies.training import remove_partial_checkpoints

from .lerobot_data import write_reach_dataset

ROOT = Path(__file__).parents[1]
PY = sys.executable
LEROBOT_TRAIN = str(Path(PY).parent / "lerobot-train")
SMALL = ["--policy.image_size=32", "--policy.d_model=64", "--policy.n_layers=2", "--policy.n_heads=4",
         "--policy.mlp_hidden=128", "--policy.vision_kwargs={depth: 1}", "--policy.use_bf16=false"]


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "reach"
    write_reach_dataset(root, episodes=4, frames=8)  # 32 frames
    return root


def run(args, timeout=300, **kw):
    proc = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def data_args(data):
    return [f"--dataset.root={data}", "--dataset.repo_id=local/reach"]


def test_preset_trains_saves_reloads_and_resumes(data, tmp_path):
    out = tmp_path / "run"
    # 1) our wrapper with the tiny preset (2 steps), 2) reload, 3) resume with plain lerobot-train
    run([PY, str(ROOT / "scripts" / "train.py"), "--config", str(ROOT / "configs" / "tabletop_tiny_cpu.json"),
         *data_args(data), "--steps=2", "--save_freq=2", "--batch_size=4", f"--output_dir={out}"])
    last = out / "checkpoints" / "last" / "pretrained_model"
    assert (last / "model.safetensors").is_file() and (last / "train_config.json").is_file()
    from lerobot.policies.factory import make_pre_post_processors

    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    policy = LLaDAVLAPolicy.from_pretrained(last)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(last))
    obs = {"observation.images.front": torch.rand(3, 96, 96), "observation.state": torch.zeros(2),
           "task": "move to the red square"}
    action = post(policy.select_action(pre(obs)))
    assert action.shape == (1, 2) and torch.isfinite(action).all()
    run([LEROBOT_TRAIN, f"--config_path={last / 'train_config.json'}", "--resume=true", "--steps=4",
         "--policy.discover_packages_path=vla.policies"])
    assert (out / "checkpoints" / "000004" / "pretrained_model" / "model.safetensors").is_file()
    assert os.readlink(out / "checkpoints" / "last") == "000004"


def test_sigkill_then_resume_mid_epoch_ends_with_the_same_parameters(data, tmp_path):
    """Batch 8 of 32 frames (4 steps an epoch), checkpoints every 3 steps: the run is killed, its
    newest checkpoint is then truncated, and resume takes the one before it, mid-epoch. The data
    order (`epoch_cycle`) and the per-sample masks replay, so the end matches an uninterrupted run."""
    common = [PY, str(ROOT / "scripts" / "train.py"), *data_args(data), "--policy.type=llada_vla",
              "--policy.device=cpu", "--policy.push_to_hub=false", "--wandb.enable=false", "--batch_size=8",
              "--num_workers=0", "--seed=3", "--steps=24", "--save_freq=3", *SMALL]
    run([*common, f"--output_dir={tmp_path / 'straight'}"])
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*common, f"--output_dir={killed}"], env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    hang_guard = time.monotonic() + 900  # not a timing check: only ends a wait that would never end
    while not (killed / "checkpoints" / "000006").exists() and proc.poll() is None and time.monotonic() < hang_guard:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = killed / "checkpoints" / "last"
    step = int(os.readlink(last))
    assert 6 <= step < 24  # killed mid-run; `last` points at a complete checkpoint
    assert (last / "training_state" / "training_step.json").is_file()
    assert (step - 3) % 4 != 0  # the checkpoint resume falls back to lies inside an epoch
    weights = last / "pretrained_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a half-copied file
    resumed = run([PY, str(ROOT / "scripts" / "train.py"),
                   f"--config_path={last / 'pretrained_model' / 'train_config.json'}", "--resume=true"])
    assert f"resuming from {killed / 'checkpoints' / f'{step - 3:06d}'}" in resumed.stderr
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "000024" / "pretrained_model" / "model.safetensors"))
    b = load_file(str(killed / "checkpoints" / "000024" / "pretrained_model" / "model.safetensors"))
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff <= 1e-6, f"resumed parameters differ by {diff}"


def test_a_resumed_run_takes_the_batches_an_uninterrupted_run_takes():
    """`epoch_cycle`: epoch e shuffled from (seed, e); a run resumed at step k skips the k % (batches per
    epoch) batches its epoch already gave. LeRobot's own `cycle` restarts the shuffle at k instead."""
    from itertools import islice

    from torch.utils.data import DataLoader

    from vla.policies.lerobot_patches import epoch_cycle

    loader = DataLoader(list(range(10)), batch_size=3, shuffle=True)  # 4 batches an epoch, the last short
    straight = [b.tolist() for b in islice(epoch_cycle(loader, seed=3, start_step=0), 12)]
    for epoch in range(3):
        assert sorted(sum(straight[4 * epoch:4 * epoch + 4], [])) == list(range(10))  # each sample once an epoch
    assert straight[:4] != straight[4:8]  # a new order every epoch
    for k in (1, 5, 6, 8):
        assert [b.tolist() for b in islice(epoch_cycle(loader, seed=3, start_step=k), 12 - k)] == straight[k:]
    assert [b.tolist() for b in islice(epoch_cycle(loader, seed=4, start_step=0), 4)] != straight[:4]


def test_a_crash_while_saving_never_leaves_a_checkpoint_resume_would_pick(tmp_path):
    ckpts = tmp_path / "checkpoints"

    def good_save(d, step):
        (d / "pretrained_model").mkdir(parents=True)
        (d / "pretrained_model" / "model.safetensors").write_text(str(step))

    def crashing_save(d, step):
        (d / "pretrained_model").mkdir(parents=True)
        raise KeyboardInterrupt("killed while writing")

    atomic_save(good_save)(ckpts / "000002", 2)
    atomic_update_last(ckpts / "000002")
    with pytest.raises(KeyboardInterrupt):
        atomic_save(crashing_save)(ckpts / "000004", 4)
    assert not (ckpts / "000004").exists() and (ckpts / "000004.partial").exists()
    assert os.readlink(ckpts / "last") == "000002"
    assert (ckpts / "last" / "pretrained_model" / "model.safetensors").read_text() == "2"
    assert remove_partial_checkpoints(tmp_path) == [ckpts / "000004.partial"]
    atomic_save(good_save)(ckpts / "000004", 4)
    atomic_update_last(ckpts / "000004")
    assert os.readlink(ckpts / "last") == "000004" and not list(ckpts.glob("*.partial"))


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(data, tmp_path):
    """accelerate launch, 2 CPU processes x 16 vs 1 process x 32: the same loss curve.

    Masks and paraphrases are drawn per sample from (frame index, step) and the loss is the
    per-sample (inv_t) mean, so DDP's average of the two halves is the full-batch gradient.
    """
    common = [*data_args(data), "--policy.type=llada_vla", "--policy.device=cpu", "--policy.push_to_hub=false",
              "--wandb.enable=false", "--num_workers=0", "--seed=7", "--steps=6", "--save_freq=2",
              "--policy.loss_weighting=inv_t", *SMALL]
    run([PY, str(ROOT / "scripts" / "train.py"), *common, "--batch_size=32", f"--output_dir={tmp_path / 'one'}"])
    accelerate = str(Path(PY).parent / "accelerate")
    proc = run([accelerate, "launch", "--multi_gpu", "--num_processes=2", "--num_machines=1", "--mixed_precision=no",
                "--dynamo_backend=no", str(ROOT / "scripts" / "train.py"), *common, "--batch_size=16",
                f"--output_dir={tmp_path / 'two'}"])
    assert "Effective batch size: 16 x 2 = 32" in proc.stdout + proc.stderr

    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import make_pre_post_processors

    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    ds = LeRobotDataset("local/reach", root=data, delta_timestamps={"action": [i / 10 for i in range(5)]})
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=32, shuffle=False)))
    curves = {}
    for run_name in ("one", "two"):
        curve = []
        for step in (2, 4, 6):
            path = tmp_path / run_name / "checkpoints" / f"{step:06d}" / "pretrained_model"
            policy = LLaDAVLAPolicy.from_pretrained(path)
            pre, _ = make_pre_post_processors(policy.config, pretrained_path=str(path))
            policy.train()
            policy.train_forwards.zero_()  # the same masks for every checkpoint
            with torch.no_grad():
                curve.append(policy.forward(pre(dict(batch)))[0].item())
        curves[run_name] = curve
    assert curves["one"][0] != curves["one"][2]  # the curve moves
    assert max(abs(a - b) for a, b in zip(curves["one"], curves["two"], strict=True)) <= 1e-4, curves


def test_time_budget_stops_training_and_checkpoints_the_last_step(data, tmp_path):
    """--max-minutes bounds training by wall clock: a run asked for 100000 steps stops after
    ~6 s of updates, with its last step checkpointed and loadable."""
    import json

    out = tmp_path / "budget"
    run([PY, str(ROOT / "scripts" / "train.py"), *data_args(data), "--policy.type=llada_vla", "--policy.device=cpu",
         "--policy.push_to_hub=false", "--wandb.enable=false", "--batch_size=4", "--num_workers=0",
         "--steps=100000", "--save_freq=100000", "--max-minutes=0.1", *SMALL, f"--output_dir={out}"])
    last = out / "checkpoints" / "last"
    step = json.loads((last / "training_state" / "training_step.json").read_text())["step"]
    assert 1 <= step < 100000
    assert (last / "pretrained_model" / "model.safetensors").is_file()
    bad = subprocess.run([PY, str(ROOT / "scripts" / "train.py"), "--max-minutes=soon"], env=env(),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--max-minutes=M" in bad.stderr
