"""Inputs of training and of loading a checkpoint, checked before LeRobot or torch is imported.

LeRobot reports a missing dataset as a hub error 200 lines down, a missing config file as
`HFValidationError: Repo id must be in the form ...`, and a truncated checkpoint as a raw
traceback naming no file. These checks read only the command line, JSON and file headers
(no torch), and raise `vla.cli.UsageError` with what was wrong and what to do:

- `config_file`: the `--config_path` file exists and is JSON; names the presets otherwise;
- `dataset_root`: the dataset the run will read (`--dataset.root`, else the config's, else
  LeRobot's cache for the repo id) holds `meta/info.json`;
- `resume_checkpoint`: every file of the checkpoint a `--resume=true` run loads is whole
  (safetensors headers against file sizes, JSON that parses, `training_step.json` with a
  step); if one is not, the newest checkpoint of the run that is whole is taken instead,
  with a warning that names the broken file, or the error names it when none is;
- `pretrained_dir`: a `pretrained_model` directory to evaluate or serve holds config.json and
  whole files, else the error names the broken file and the newest whole checkpoint of its run.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from vla.cli import UsageError

PRESETS = Path(__file__).resolve().parents[1] / "configs"
REQUIRED = ("pretrained_model/model.safetensors", "pretrained_model/config.json",
            "training_state/training_step.json")  # what LeRobot's resume reads first


def arg_value(argv: list[str], key: str) -> str | None:
    """The last value of `--key=V` or `--key V` in argv (None if absent)."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"{key}="):
            value = arg.split("=", 1)[1]
        elif arg == key and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def joined(argv: list[str]) -> list[str]:
    """argv with `--config X`, `--config=X` and `--config_path X` all written `--config_path=X`."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "--config_path"):
            if i + 1 >= len(argv):
                raise UsageError(f"{arg} needs a file, e.g. {arg} configs/tabletop_tiny_cpu.json")
            arg, i = f"--config_path={argv[i + 1]}", i + 1
        elif arg.startswith("--config="):
            arg = "--config_path=" + arg.split("=", 1)[1]
        out.append(arg)
        i += 1
    return out


def preset_names() -> str:
    """The presets of configs/, for messages."""
    return ", ".join(f"configs/{p.name}" for p in sorted(PRESETS.glob("*.json"))) or "none found"


def config_file(argv: list[str]) -> dict:
    """The `--config_path` JSON (empty without one)."""
    path = arg_value(argv, "--config_path")
    if path is None:
        return {}
    names = preset_names()
    if not Path(path).is_file():
        raise UsageError(f"config file {path} not found; pass a preset ({names}) or a checkpoint's "
                         "pretrained_model/train_config.json")
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"config file {path} is not valid JSON ({err}); fix it or pass a preset ({names})") from None


def lerobot_home() -> Path:
    """LeRobot's dataset cache (lerobot.utils.constants.HF_LEROBOT_HOME), computed without importing it."""
    if "HF_LEROBOT_HOME" in os.environ:
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(hf_home).expanduser() / "lerobot"


def dataset_root(argv: list[str], config: dict) -> Path | None:
    """The root the run reads its dataset from, checked to hold a LeRobotDataset (None: a hub download,
    only when HF_HUB_OFFLINE=0)."""
    dataset = config.get("dataset") or {}
    root = arg_value(argv, "--dataset.root") or dataset.get("root")
    repo_id = arg_value(argv, "--dataset.repo_id") or dataset.get("repo_id")
    if root is None and repo_id is None:
        raise UsageError("no dataset given: pass --dataset.root=DIR (a LeRobotDataset v3, e.g. written by "
                         "scripts/collect_demos.py --out DIR) and --dataset.repo_id=local/NAME")
    path = Path(root).expanduser() if root else lerobot_home() / repo_id
    if (path / "meta" / "info.json").is_file():
        return path
    if root is None and os.environ.get("HF_HUB_OFFLINE", "1") == "0":
        return None  # LeRobot downloads repo_id from the hub
    where = "" if root else f" (LeRobot's cache for --dataset.repo_id={repo_id})"
    raise UsageError(f"no dataset at {path}{where}: it has no meta/info.json; pass --dataset.root=DIR of a "
                     "LeRobotDataset v3, e.g. one written by scripts/collect_demos.py --out DIR")


def file_problem(path: Path) -> str | None:
    """Why `path` (a checkpoint's .safetensors or .json) cannot be loaded, or None if it looks whole."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if path.suffix == ".json":
        try:
            parsed = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return f"is not valid JSON ({err})"
        if path.name == "training_step.json" and not isinstance((parsed or {}).get("step"), int):
            return "holds no integer 'step'"
        return None
    if len(data) < 8:
        return f"is truncated ({len(data)} bytes)"
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n])
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError):
        return "has a corrupt safetensors header"
    if len(data) < 8 + n + end:
        return f"is truncated ({len(data)} of {8 + n + end} bytes)"
    return None


def checkpoint_problem(checkpoint: Path) -> str | None:
    """'<file> <why>' for the first file of `checkpoint` that cannot be loaded, or None if every one looks whole."""
    for name in REQUIRED:
        if not (checkpoint / name).is_file():
            return f"{checkpoint / name} is missing"
    files = sorted(p for sub in ("pretrained_model", "training_state") for p in (checkpoint / sub).glob("*")
                   if p.suffix in (".json", ".safetensors"))
    for path in files:
        if (why := file_problem(path)) is not None:
            return f"{path} {why}"
    return None


def shown(path: Path) -> str:
    """`path` relative to the working directory when it lies below it (messages read as typed)."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def newest_whole(checkpoints: Path, exclude: Path | None = None) -> Path | None:
    """The highest-numbered checkpoint under `checkpoints` (a run's checkpoints/ folder) whose files all load."""
    if not checkpoints.is_dir():
        return None
    steps = sorted((p for p in checkpoints.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
    return next((p for p in steps if p.resolve() != exclude and checkpoint_problem(p) is None), None)


def pretrained_dir(path: str) -> Path:
    """`path` if it is a `pretrained_model` directory whose config and weights load, else `UsageError`."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise UsageError(f"{p} is not a saved policy (no config.json there); pass a checkpoint's pretrained_model "
                         "directory, e.g. outputs/train/RUN/checkpoints/last/pretrained_model")
    problems = [f"{f} {why}" for f in sorted(p.glob("*")) if f.suffix in (".json", ".safetensors")
                and (why := file_problem(f)) is not None]
    if problems:
        full = p.resolve()
        other = newest_whole(full.parents[1], exclude=full.parent) if p.name == "pretrained_model" else None
        hint = f"the newest whole checkpoint of this run is {shown(other / 'pretrained_model')}" if other else \
            "re-copy the file or pass another checkpoint"
        raise UsageError(f"{problems[0]}; {hint}")
    return p


def resume_checkpoint(argv: list[str]) -> tuple[list[str], str | None]:
    """-> (argv, warning): argv unchanged when the checkpoint to resume loads; else argv resuming
    from the newest whole checkpoint of the same run and a warning naming the broken file."""
    if (arg_value(argv, "--resume") or "false").lower() not in ("true", "1", "yes"):
        return argv, None
    config_path = arg_value(argv, "--config_path")
    if config_path is None or Path(config_path).name != "train_config.json":
        raise UsageError("--resume=true needs --config_path=OUT/checkpoints/last/pretrained_model/train_config.json "
                         "(the checkpoint to resume)")
    checkpoint = Path(config_path).parents[1]
    problem = checkpoint_problem(checkpoint)
    if problem is None:
        return argv, None
    other = newest_whole(checkpoint.parent, exclude=checkpoint.resolve())
    if other is None:
        raise UsageError(f"cannot resume from {checkpoint}: {problem}, and no other checkpoint in {checkpoint.parent} "
                         "loads; restore the file, or start a new run (drop --resume)")
    new = f"--config_path={other / 'pretrained_model' / 'train_config.json'}"
    argv = [new if a.startswith("--config_path=") else a for a in argv]
    return argv, (f"cannot resume from {checkpoint}: {problem}; resuming from {other} instead, "
                  "the newest checkpoint of this run that loads")
