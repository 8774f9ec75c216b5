"""Every bad input tried on the entry points, with the one line each answers (docs/errors.md).

`CASES` lists (script, arguments, text the message must hold). `run_case` runs one as a
subprocess in a scratch folder that `make_fixtures` fills (a dataset stub, a run whose
newest checkpoint has a truncated model.safetensors, runs whose only checkpoint has a
truncated model or a broken training_step.json, a plain file, the presets linked as
configs/), so the messages name relative paths and read the same on every machine.
scripts/bad_inputs.py rewrites docs/errors.md from them; tests/test_bad_inputs.py runs every
case (exit code 2, one line, the expected text) and checks the table is current.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = "configs/tabletop_tiny_cpu.json"
TRAIN = ("--config", TINY, "--dataset.root=dataset")  # a valid start, for one bad policy value
BEGIN, END = "<!-- bad-inputs:begin (written by scripts/bad_inputs.py) -->", "<!-- bad-inputs:end -->"


@dataclass(frozen=True)
class Case:
    script: str  # scripts/<script>
    args: tuple[str, ...]
    expect: str  # the message must contain this


def _cases(script: str, *rows: tuple[tuple[str, ...], str]) -> list[Case]:
    return [Case(script, args, expect) for args, expect in rows]


EVAL = ("--suite", "tabletop", "--tasks", "all", "--out", "out")
CASES: list[Case] = [
    *_cases("train.py",
            (("--config", TINY, "--dataset.root=no/such/dataset"), "no dataset at no/such/dataset"),
            (("--config", "configs/nope.json", "--dataset.root=dataset"), "config file configs/nope.json not found"),
            ((*TRAIN, "--policy.chunk_size=-1"), "chunk_size=-1 must be >= 1"),
            ((*TRAIN, "--policy.decoder=beam"), "unknown decoder 'beam'; choose from"),
            ((*TRAIN, "--policy.chunk_size=five"), "--policy.chunk_size"),
            ((*TRAIN, "--output_dir=dataset"), "already exists"),
            (("--config_path=broken_step/checkpoints/last/pretrained_model/train_config.json", "--resume=true"),
             "training_step.json is not valid JSON"),
            (("--config_path=truncated/checkpoints/last/pretrained_model/train_config.json", "--resume=true"),
             "model.safetensors is truncated"),
            (("--resume=true",), "--resume=true needs --config_path"),
            ((*TRAIN, "--max-minutes=soon"), "--max-minutes=M")),
    *_cases("eval.py",
            (("--policy.path=no/such/checkpoint", *EVAL), "is not a saved policy"),
            (("--policy.path=run/checkpoints/000004/pretrained_model", *EVAL),
             "newest whole checkpoint of this run is run/checkpoints/000002/pretrained_model"),
            (("--policy", "expert", "--suite", "tabletop", "--tasks", "jump", "--out", "out"),
             "unknown tabletop task 'jump'"),
            (("--policy", "expert", "--suite", "libero", "--tasks", "all", "--out", "out"), "invalid choice"),
            (("--policy", "expert", *EVAL, "--n-episodes", "0", "--n-envs", "1"), "n_episodes >= 1"),
            (("--policy", "expert", *EVAL, "--decoder", "had"), "apply to a --policy.path"),
            (("--policy", "expert", *EVAL, "--demos", "no/such/demos"), "no dataset there"),
            (("--policy", "expert", "--suite", "metaworld", "--tasks", "reach-v3", "--out", "out",
              "--instructions", "no/such/phrasings.json"), "no such file"),
            (("--policy", "expert", *EVAL, "--instructions", "run/checkpoints/000002/pretrained_model/config.json"),
             "for Meta-World tasks")),
    *_cases("collect_demos.py",
            (("--suite", "libero", "--tasks", "all", "--episodes-per-task", "1", "--out", "d"), "invalid choice"),
            (("--suite", "tabletop", "--tasks", "jump", "--episodes-per-task", "1", "--out", "d"), "unknown tabletop"),
            (("--suite", "tabletop", "--tasks", "all", "--episodes-per-task", "0", "--out", "d"),
             "episodes_per_task must be >= 1"),
            (("--suite", "tabletop", "--tasks", "all", "--episodes-per-task", "1", "--out", "notes.txt"), "is a file")),
    *_cases("serve.py",
            (("--policy.path=no/such/checkpoint",), "is not a saved policy"),
            (("--policy.path=run/checkpoints/000004/pretrained_model",), "model.safetensors is truncated"),
            (("--policy.path=run/checkpoints/000002/pretrained_model", "--port", "70000"), "use 0-65535"),
            (("--policy.path=run/checkpoints/000002/pretrained_model", "--max-pending", "0"), "max_pending=0")),
    *_cases("run_controller.py",
            ((), "pass exactly one of --url"),
            (("--url", "http://127.0.0.1:8000"), "expected ws://HOST:PORT"),
            (("--url", "ws://127.0.0.1:9"), "cannot connect to the policy server"),
            (("--url", "ws://127.0.0.1:9", "--episodes", "0"), "episodes=0")),
    *_cases("pipeline.py",
            (("--tasks", "jump"), "unknown tabletop task 'jump'"),
            (("--eval-episodes", "0"), "eval_episodes=0"),
            (("--minutes", "0"), "give training a budget")),
    *_cases("results_tabletop.py",
            (("--preset", "configs/nope.json"), "preset configs/nope.json not found"),
            (("--benchmarks", "no/such/folder/BENCHMARKS.md"), "folder that does not exist")),
    *_cases("results_metaworld.py",
            (("--policies", "llada_had,gpt"), "unknown policies ['gpt']"),
            (("--minutes", "0"), "minutes=0.0")),
    *_cases("ablate_recipe.py",
            (("--variants", "recipe,no_magic"), "unknown variant 'no_magic'"),
            (("--minutes", "-1"), "minutes=-1.0")),
]


def _safetensors(path: Path, truncate: int = 0) -> None:
    """A one-tensor safetensors file (written by hand: no torch), less its last `truncate` bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    data = struct.pack("<Q", len(header)) + header + bytes(8)
    path.write_bytes(data[:len(data) - truncate])


def write_checkpoint(checkpoints: Path, step: int, truncated: bool = False, step_json: str | None = None) -> Path:
    """checkpoints/<step>/ with LeRobot's file layout (stub contents), `last` pointing at it."""
    ckpt = checkpoints / f"{step:06d}"
    (ckpt / "pretrained_model").mkdir(parents=True)
    (ckpt / "training_state").mkdir()
    (ckpt / "pretrained_model" / "config.json").write_text(json.dumps({"type": "llada_vla"}))
    (ckpt / "pretrained_model" / "train_config.json").write_text(json.dumps({"dataset": {"root": "dataset"}}))
    _safetensors(ckpt / "pretrained_model" / "model.safetensors", truncate=5 if truncated else 0)
    (ckpt / "training_state" / "training_step.json").write_text(step_json or json.dumps({"step": step}))
    (checkpoints / "last").unlink(missing_ok=True)
    (checkpoints / "last").symlink_to(ckpt.name)
    return ckpt


def make_fixtures(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset" / "meta").mkdir(parents=True, exist_ok=True)
    (folder / "dataset" / "meta" / "info.json").write_text("{}")
    (folder / "notes.txt").write_text("not a folder\n")
    if not (folder / "configs").exists():
        (folder / "configs").symlink_to(ROOT / "configs")
    for name, kwargs in (("run", [{}, {"truncated": True}]), ("truncated", [{"truncated": True}]),
                         ("broken_step", [{"step_json": '{"step": 4'}])):
        if not (folder / name).exists():
            for i, kw in enumerate(kwargs):
                write_checkpoint(folder / name / "checkpoints", 2 * (i + 1), **kw)
    return folder


def run_case(case: Case, folder: Path, env: dict | None = None) -> tuple[int, list[str]]:
    """-> (exit code, stderr lines) of the case run from `folder` (see `make_fixtures`)."""
    base = {k: v for k, v in os.environ.items() if k != "VLA_DEBUG"}
    env = {**base, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / case.script), *case.args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr.strip().splitlines()


def render(results: list[tuple[Case, int, list[str]]]) -> str:
    """The docs/errors.md table: entry point, arguments, exit code, the line printed."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| entry point | arguments | exit | message |", "|---|---|---|---|"]
    rows += [f"| scripts/{c.script} | `{cell(' '.join(c.args)) or '(none)'}` | {code} | {cell(' / '.join(lines))} |"
             for c, code, lines in results]
    return "\n".join(rows)


def write_table(doc: Path, table: str) -> None:
    """Replace the table between the markers of `doc`."""
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    doc.write_text(head + BEGIN + "\n" + table + "\n" + END + rest.partition(END)[2])
