"""Policies side by side on Meta-World: same demonstrations, same wall-clock training budget.

    python scripts/results_metaworld.py            # MT10: LLaDA-VLA (HAD) vs AR baseline vs ACT

One run (`compare`) does, in `cfg.out`:

1. `demos/`: `episodes_per_task` scripted-expert demonstrations per task (LeRobotDataset);
2. `train/<key>/`: each policy of `POLICIES` trained on those demos by
   `python -m vla.policies.training` for `minutes` of training updates (`--max-minutes`, whatever the step count), one after
   the other on this machine, so each gets the same compute;
3. `eval/<key>/`: closed-loop evaluation on the same unseen seeds for every policy, the
   expert and random anchors in the first policy's report.

Finished stages are skipped when the same command is run again (a training that was cut
short restarts from scratch: a wall-clock budget cannot be resumed fairly).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from vla.bench.pipeline import check_config
from vla.bench.results import _ci
from vla.cli import UsageError
from vla.envs.collection import CollectConfig, collect
from vla.envs.evaluation import EvalConfig, check_seeds_disjoint, evaluate, load_policy

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Results: Meta-World MT10"
MT10_PRESET = "configs/metaworld_mt10_tiny_cpu.json"

# key -> (label, training arguments). All re-plan every 5 control steps.
POLICIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "llada_had": ("LLaDA-VLA tiny (HAD)", ("--config", MT10_PRESET)),
    "ar": ("AR baseline (causal, same size)", ("--config", MT10_PRESET, "--policy.attention=causal",
                                                "--policy.decoder=ar", "--policy.decode_steps=null")),
    "act": ("LeRobot ACT (no pretrained backbone)", (
        "--policy.type=act", "--policy.pretrained_backbone_weights=null", "--policy.device=cpu",
        "--policy.push_to_hub=false", "--policy.chunk_size=20", "--policy.n_action_steps=5",
        "--wandb.enable=false", "--num_workers=0", "--log_freq=50")),
}


@dataclass
class CompareConfig:
    out: str = "outputs/results/metaworld_mt10"
    tasks: str = "MT10"
    episodes_per_task: int = 50
    minutes: float = 12.0  # training wall clock per policy
    batch_size: int = 32
    eval_episodes: int = 10  # per task
    workers: int = 2
    seed: int = 0
    policies: tuple[str, ...] = tuple(POLICIES)
    max_videos: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policies) - set(POLICIES))
        if unknown:
            raise UsageError(f"unknown policies {unknown}; choose from {list(POLICIES)}")
        check_config(self, "metaworld", "episodes_per_task", "minutes", "batch_size", "eval_episodes")


def _train(cfg: CompareConfig, key: str, demos: Path, train_dir: Path) -> dict[str, Any]:
    """Train one policy for the budget; -> {checkpoint, steps, train_s} (cached in done.json)."""
    done = train_dir / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    shutil.rmtree(train_dir, ignore_errors=True)  # an interrupted budget run starts over
    _, args = POLICIES[key]
    cmd = [sys.executable, "-m", "vla.policies.training", *args, f"--dataset.root={demos}",
           "--dataset.repo_id=local/vla_demos", "--steps=1000000", "--save_freq=1000000",
           f"--batch_size={cfg.batch_size}", f"--seed={cfg.seed}", f"--output_dir={train_dir}",
           f"--max-minutes={cfg.minutes}"]
    t = time.time()
    subprocess.run(cmd, check=True)
    last = train_dir / "checkpoints" / "last"
    step = json.loads((last / "training_state" / "training_step.json").read_text())["step"]
    result = {"checkpoint": str(last.resolve() / "pretrained_model"), "steps": step, "train_s": time.time() - t,
              "command": cmd[1:]}
    done.write_text(json.dumps(result, indent=2))
    return result


def _n_params(checkpoint: str) -> int:
    with safe_open(str(Path(checkpoint) / "model.safetensors"), "np") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """Run (or finish) collection, every training and every evaluation; -> results."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}

    demos = out / "demos"
    print(f"[1/3] collecting {cfg.episodes_per_task} expert demos per task ({cfg.tasks}) -> {demos}", flush=True)
    t = time.time()
    collect(CollectConfig(suite="metaworld", tasks=cfg.tasks, episodes_per_task=cfg.episodes_per_task,
                          out=str(demos), workers=cfg.workers, seed=cfg.seed, progress_bar=cfg.progress))
    timings.setdefault("collect_s", time.time() - t)
    timings_file.write_text(json.dumps(timings))

    trained = {}
    for i, key in enumerate(cfg.policies):
        print(f"[2/3] training {POLICIES[key][0]} for {cfg.minutes:g} min ({i + 1}/{len(cfg.policies)})", flush=True)
        trained[key] = _train(cfg, key, demos, out / "train" / key)

    evals = {}
    for i, key in enumerate(cfg.policies):
        path = out / "eval" / key / "eval_info.json"
        print(f"[3/3] evaluating {POLICIES[key][0]}: {cfg.eval_episodes} episodes per task -> {path.parent}",
              flush=True)
        if path.is_file():
            evals[key] = json.loads(path.read_text())
            continue
        ecfg = EvalConfig(suite="metaworld", tasks=cfg.tasks, n_episodes=cfg.eval_episodes, n_envs=cfg.workers,
                          out_dir=str(path.parent), progress=cfg.progress, max_videos=cfg.max_videos)
        if i == 0:
            check_seeds_disjoint([ecfg.seed_base + j for j in range(cfg.eval_episodes)], demos)
        t = time.time()
        evals[key] = evaluate(ecfg, load_policy(trained[key]["checkpoint"]), ("expert", "random") if i == 0 else ())
        timings[f"eval_{key}_s"] = time.time() - t
        timings_file.write_text(json.dumps(timings))
    for key in cfg.policies:
        trained[key]["params"] = _n_params(trained[key]["checkpoint"])
    return {"config": asdict(cfg), "trained": trained, "evals": evals, "timings": timings}


def compare_section(r: dict[str, Any], command: str, machine: str) -> str:
    """The BENCHMARKS.md section (markdown) from one `compare` run."""
    cfg, trained, evals = r["config"], r["trained"], r["evals"]
    keys = list(evals)
    anchors = evals[keys[0]].get("anchors", {})
    lines = [
        SECTION, "",
        f"`{command}` (CPU here: {machine}). Demos: {cfg['episodes_per_task']} scripted-expert episodes per task "
        f"at 128x128 (corner4), collected in {r['timings'].get('collect_s', float('nan')) / 60:.1f} min. Every "
        f"policy trained on them for the same {cfg['minutes']:g} min of training updates on this CPU (batch "
        f"{cfg['batch_size']}), one after the other; evaluation: {cfg['eval_episodes']} episodes per task on seeds "
        "disjoint from the demos, the same seeds for every policy, re-planning every 5 control steps. Success in % "
        "with Wilson 95% intervals.", "",
        "| policy | params | training steps in the budget | success (all tasks) | latency p50 ms |",
        "|---|---|---|---|---|",
    ]
    for k in keys:
        lat = evals[k]["overall"]["latency_ms"].get("p50", float("nan"))
        lines.append(f"| {POLICIES[k][0]} | {trained[k]['params'] / 1e6:.1f}M | {trained[k]['steps']} | "
                     f"{_ci(evals[k]['overall'])} | {lat:.0f} |")
    for name, a in anchors.items():
        lines.append(f"| {name} (anchor) | - | - | {_ci(a['overall'])} | - |")
    lines += ["", "| task | " + " | ".join(POLICIES[k][0] for k in keys) + " | "
              + " | ".join(f"{a} (anchor)" for a in anchors) + " |",
              "|---|" + "---|" * (len(keys) + len(anchors))]
    per = {k: {x["task"]: x["metrics"] for x in evals[k]["per_task"]} for k in keys}
    for t in evals[keys[0]]["per_task"]:
        name = t["task"]
        cells = [_ci(per[k][name]) for k in keys] + [_ci(a["per_task"][name]) for a in anchors.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
