"""The README's LeRobot CLI lines run as written: collect (the README's own command), then
`lerobot-train` and `lerobot-eval` exactly as the README spells them, with only size and
length overrides appended (argparse and draccus take the last value of a repeated flag).

The commands are read from README.md, so the test breaks when the README drifts from what
works. They run in a scratch folder holding a `configs` link, the console scripts found next
to this interpreter (as `eval "$(bash scripts/install.sh)"` puts them on PATH).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# appended to the README's lines: a few tiny episodes, 2 training steps of a shrunk model
OVERRIDES = {
    "scripts/collect_demos.py": ["--tasks", "touch", "--episodes-per-task", "2", "--workers", "0", "--png",
                                 "--no-progress"],
    "lerobot-train": ["--steps=2", "--save_freq=2", "--batch_size=4", "--policy.image_size=32",
                      "--policy.d_model=64", "--policy.n_layers=2", "--policy.mlp_hidden=128"],
    "lerobot-eval": ["--env.task=touch", "--eval.n_episodes=2", "--eval.batch_size=2", "--env.episode_length=15"],
}


def readme_commands() -> list[list[str]]:
    """Every shell command in README.md's ```bash blocks (continuation lines joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(shlex.split(line, comments=True))
    return commands


def find(program: str, first_arg: str | None = None) -> list[str]:
    found = [c for c in readme_commands() if c[0] == program and (first_arg is None or c[1] == first_arg)]
    assert found, f"README.md has no `{program} {first_arg or ''}` command"
    return found[0]


def test_readme_names_its_lerobot_commands_completely():
    for program in ("lerobot-train", "lerobot-eval"):
        cmd = find(program)
        assert "..." not in cmd and all(not a.endswith("...") for a in cmd), cmd
    assert "--num_workers=0" in find("lerobot-train")  # LeRobot's 4 workers crawl on a few cores
    assert any(a.startswith("--env.discover_packages_path=") for a in find("lerobot-eval"))


@pytest.mark.slow
def test_readme_collect_train_and_eval_commands_run_as_written(tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(cmd: list[str], key: str) -> None:
        if cmd[0] == "python":
            cmd = [sys.executable, str(ROOT / cmd[1]), *cmd[2:]]
        proc = subprocess.run([*cmd, *OVERRIDES[key]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"{key} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"

    run(find("python", "scripts/collect_demos.py"), "scripts/collect_demos.py")
    assert (tmp_path / "outputs" / "datasets" / "tabletop" / "meta" / "info.json").is_file()

    train = find("lerobot-train")
    run(train, "lerobot-train")
    out = Path(next(a.split("=", 1)[1] for a in train if a.startswith("--output_dir=")))
    last = tmp_path / out / "checkpoints" / "last" / "pretrained_model"
    saved = json.loads((last / "train_config.json").read_text())
    assert saved["num_workers"] == 0 and saved["policy"]["type"] == "llada_vla" and saved["steps"] == 2

    evaluate = find("lerobot-eval")
    policy_path = next(a.split("=", 1)[1] for a in evaluate if a.startswith("--policy.path="))
    assert tmp_path / policy_path == last  # the eval line reads the checkpoint the train line writes
    run(evaluate, "lerobot-eval")
    eval_dir = tmp_path / next(a.split("=", 1)[1] for a in evaluate if a.startswith("--output_dir="))
    info = json.loads((eval_dir / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 2
    assert all((tmp_path / v).is_file() for v in info["overall"]["video_paths"])  # relative to the cwd
