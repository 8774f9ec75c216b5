"""The tabletop pipeline end to end: collect demos -> train the tiny preset -> evaluate.

This is the README's main job (`bash scripts/quickstart.sh` -> `scripts/pipeline.py`; its
measured wall time is in BENCHMARKS.md, "Quickstart wall time", by `scripts/bench_quickstart.py`).
Each stage is the project's own entry point, so the pipeline checks them together:

1. `vla.envs.collection.collect`: scripted-expert demos into a LeRobotDataset (resumable),
   each scene once per goal;
2. `python -m vla.policies.training --config configs/tabletop_tiny_cpu.json` (LeRobot's training loop,
   atomic checkpoints, frame cache) in a subprocess, for a wall-clock budget
   (`train_minutes`, the learning rate annealing over it) and/or a number of steps;
3. the grounding probe (`vla.bench.grounding`, forward passes only) and
   `vla.envs.evaluation.evaluate` on seeds disjoint from the demos (checked against the
   demo dataset), with the expert, language-blind and random anchors on the same seeds:
   eval_info.json, report.md, success.png and videos; then, if asked, the language ablation
   (`eval_swap/`).

A finished stage is skipped when the pipeline is re-run with the same `out` (a crash loses
at most the stage in progress; training resumes from its last checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vla.bench.grounding import ProbeConfig, probe_grounding, probe_table
from vla.cli import UsageError, require_positive
from vla.envs.collection import CollectConfig, collect, task_list
from vla.envs.evaluation import EvalConfig, check_seeds_disjoint, evaluate, load_policy
from vla.envs.recorder import read_progress
from vla.policies.preflight import preset_names

ROOT = Path(__file__).resolve().parents[1]


def check_config(cfg, suite: str, *positive: str) -> None:
    """An experiment config's bad values, at construction: its task spec (the error lists the valid
    names), its preset file when it has one, and the fields that must be > 0."""
    task_list(suite, cfg.tasks)
    preset = getattr(cfg, "preset", None)
    if preset is not None and not (ROOT / preset).is_file():
        raise UsageError(f"preset {preset} not found; choose from {preset_names()} or pass a config file")
    require_positive(cfg, *positive)


@dataclass
class PipelineConfig:
    out: str = "outputs/pipeline"  # everything goes under this folder
    tasks: str = "all"  # tabletop families: push, touch, reach, reach_slots or all
    episodes_per_task: int = 150  # demonstrations per family
    perturb_std: float = 0.0  # DART noise on the executed demo actions (clean labels recorded)
    train_minutes: float | None = 18.0  # training budget in minutes of updates (None: `steps` alone decides)
    steps: int | None = None  # training steps (batch `batch_size`); None: as many as the budget allows
    batch_size: int = 32
    eval_episodes: int = 20  # evaluation episodes per family
    preset: str = "configs/tabletop_tiny_cpu.json"
    workers: int = 2  # rollout processes for collection and evaluation
    seed: int = 0
    anchors: tuple[str, ...] = ("expert", "blind", "random")  # rolled out on the same seeds, in the same report
    language_ablation: bool = False  # also evaluate with swapped instructions (eval_swap/; +~40% eval time)
    train_args: tuple[str, ...] = ()  # extra lerobot-train overrides, e.g. ("--policy.d_model=128",)
    probe_scenes: int = 30  # grounding probe: new scenes per family (0 = skip)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.train_minutes is None and self.steps is None:
            raise UsageError("give training a budget: train_minutes (--minutes), steps (--steps), or both")
        check_config(self, "tabletop", "train_minutes", "steps", "episodes_per_task", "batch_size", "eval_episodes")


def _train(cfg: PipelineConfig, demos: Path, train_dir: Path) -> tuple[Path, bool]:
    """-> (final checkpoint, whether training ran now: False when an earlier run finished it)."""
    last = train_dir / "checkpoints" / "last" / "pretrained_model"
    marker = train_dir / "finished.json"  # written once training ended (its final step is then `last`)
    if marker.is_file():
        return train_dir / "checkpoints" / json.loads(marker.read_text())["checkpoint"] / "pretrained_model", False
    script = "-m", "vla.policies.training"
    budget = [] if cfg.train_minutes is None else [f"--max-minutes={cfg.train_minutes}"]
    if last.is_dir():  # resume an interrupted run (a budget counts the seconds it already trained)
        cmd = [sys.executable, *script, f"--config_path={last / 'train_config.json'}", "--resume=true", *budget]
    else:
        steps = cfg.steps or 10**7  # the budget ends it
        every = [f"--save_freq={max(cfg.steps // 4, 1)}", f"--log_freq={max(cfg.steps // 20, 1)}"] if cfg.steps \
            else ["--save_freq=400", "--log_freq=100"]
        cmd = [sys.executable, *script, "--config", str(ROOT / cfg.preset), f"--dataset.root={demos}",
               "--dataset.repo_id=local/vla_demos", f"--steps={steps}", f"--batch_size={cfg.batch_size}",
               *every, f"--output_dir={train_dir}", f"--seed={cfg.seed}", *budget,
               *([f"--policy.scheduler_decay_steps={cfg.steps}"] if cfg.steps else []), *cfg.train_args]
    subprocess.run(cmd, check=True)
    final = (train_dir / "checkpoints" / "last").resolve().name
    marker.write_text(json.dumps({"checkpoint": final}))
    return train_dir / "checkpoints" / final / "pretrained_model", True


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run (or finish) every stage; returns a summary with the success rate and report path."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "pipeline_config.json"
    same_settings = config_file.is_file() and json.loads(config_file.read_text()) == json.loads(json.dumps(asdict(cfg)))
    config_file.write_text(json.dumps(asdict(cfg), indent=2))
    # A re-run skips finished stages; their wall times are kept from the run that did them.
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    if not timings and (out / "summary.json").is_file():  # written by an earlier version of this pipeline
        old = json.loads((out / "summary.json").read_text())
        timings = {k: old[k] for k in ("collect_s", "train_s", "eval_s") if k in old}

    t = time.time()
    demos = out / "demos"
    before = (read_progress(demos) or {}).get("episodes", []) if demos.is_dir() else []
    print(f"[1/3] collecting {cfg.episodes_per_task} expert demos per family ({cfg.tasks}) -> {demos}", flush=True)
    progress = collect(CollectConfig(suite="tabletop", tasks=cfg.tasks, episodes_per_task=cfg.episodes_per_task,
                                     out=str(demos), workers=cfg.workers, seed=cfg.seed,
                                     perturb_std=cfg.perturb_std, progress_bar=cfg.progress))
    if len(progress["episodes"]) > len(before) or "collect_s" not in timings:
        timings["collect_s"] = timings.get("collect_s", 0.0) * bool(before) + time.time() - t
    timings_file.write_text(json.dumps(timings))

    t = time.time()
    budget = " and ".join(x for x in (f"{cfg.train_minutes:g} min" if cfg.train_minutes else "",
                                      f"{cfg.steps} steps" if cfg.steps else "") if x)
    print(f"[2/3] training {cfg.preset} for {budget} -> {out / 'train'}", flush=True)
    checkpoint, trained = _train(cfg, demos, out / "train")
    if trained or "train_s" not in timings:
        timings["train_s"] = time.time() - t  # a resumed run counts from its restart only
    timings_file.write_text(json.dumps(timings))

    old = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else None
    if (same_settings and not trained and old and old.get("checkpoint") == str(checkpoint)
            and (out / "eval" / "eval_info.json").is_file()):
        print(f"[3/3] reusing the evaluation of {checkpoint} in {out / 'eval'} (delete summary.json to redo it)")
        return {**old, "reused": True}  # the same checkpoint, seeds and settings: the same results
    t = time.time()
    policy = load_policy(str(checkpoint))
    probe = None
    if cfg.probe_scenes:
        probe = probe_grounding(policy, ProbeConfig(tasks=cfg.tasks, n_scenes=cfg.probe_scenes))
        (out / "grounding_probe.json").write_text(json.dumps(probe, indent=2, default=str))
        print(f"grounding probe ({cfg.probe_scenes} new scenes per family, every goal asked; first chunk's heading):\n"
              + probe_table(probe), flush=True)
    print(f"[3/3] evaluating {cfg.eval_episodes} episodes per family on unseen seeds -> {out / 'eval'}", flush=True)
    eval_cfg = EvalConfig(suite="tabletop", tasks=cfg.tasks, n_episodes=cfg.eval_episodes, n_envs=cfg.workers,
                          out_dir=str(out / "eval"), progress=cfg.progress, max_videos=4)
    check_seeds_disjoint([eval_cfg.seed_base + i for i in range(cfg.eval_episodes)], demos)
    info = evaluate(eval_cfg, policy, cfg.anchors)
    swap = None
    if cfg.language_ablation:
        swap = evaluate(dataclasses.replace(eval_cfg, out_dir=str(out / "eval_swap"), swap_instructions=True,
                                            max_videos=0), policy)
    timings["eval_s"] = time.time() - t
    timings_file.write_text(json.dumps(timings))

    summary = {**summarize(info, swap), "checkpoint": str(checkpoint), "train_steps": int(checkpoint.parent.name),
               "report": str(out / "eval" / "report.md"),
               "grounding_probe": None if probe is None else {"overall": probe["overall"],
                                                              "per_task": probe["per_task"]}, **timings}
    if swap is not None:
        summary["language_ablation"]["report"] = str(out / "eval_swap" / "report.md")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def summarize(info: dict, swap: dict | None = None) -> dict:
    """The headline of an evaluation (eval_info with anchors) and of its language ablation."""
    overall = info["overall"]
    summary = {"pc_success": overall["pc_success"], "success_ci95": overall["success_ci95"],
               "pc_success_per_task": {t["task"]: t["metrics"]["pc_success"] for t in info["per_task"]},
               "anchors": {k: a["overall"] for k, a in info.get("anchors", {}).items()}}
    if swap is not None:
        so = swap["overall"]
        summary["language_ablation"] = {
            "pc_success_swapped_instruction": so["pc_success"], "success_ci95": so["success_ci95"],
            "pc_success_original_goal": so["pc_success_original_goal"],
            "success_ci95_original_goal": so["success_ci95_original_goal"]}
    return summary


def language_following_failures(summary: dict) -> list[str]:
    """What a summary (`summarize`, with the blind anchor and the language ablation) lacks for
    "the policy follows the instruction" ([] when nothing): its success interval lies above the
    language-blind anchor's on the same seeds, and with every instruction swapped for another goal
    of the same scene its success moves to the goal it was given (above the blind ceiling, and
    above what it still scores on the goal the instruction replaced)."""
    failures = []
    blind = summary["anchors"].get("blind")
    if blind is None:
        return ["no language-blind anchor on the same seeds: evaluate with anchors including 'blind'"]
    low, high = summary["success_ci95"][0], blind["success_ci95"][1]
    if not low > high:
        failures.append(f"success {summary['pc_success']:.1f}% (lower bound {low:.1f}) does not beat the "
                        f"language-blind anchor's upper bound {high:.1f}")
    swap = summary.get("language_ablation")
    if swap is None:
        return failures + ["no language ablation (swapped instructions) to check"]
    if not swap["success_ci95"][0] > high:
        failures.append(f"with swapped instructions success {swap['pc_success_swapped_instruction']:.1f}% does not "
                        f"beat the language-blind upper bound {high:.1f}")
    if not swap["success_ci95_original_goal"][1] < swap["success_ci95"][0]:
        failures.append(f"with swapped instructions the replaced goal still scores "
                        f"{swap['pc_success_original_goal']:.1f}%: success does not move to the given goal")
    return failures
