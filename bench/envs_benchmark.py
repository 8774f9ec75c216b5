"""Measurements behind the `## Simulation` section of BENCHMARKS.md.

This module owns how the suites are measured and how the section is written, so every
number in it comes from a run (`scripts/bench_envs.py`), never from a hand edit:

- scripted-expert success per task (state observations, no rendering);
- env steps per second, with and without a rendered image per step;
- demonstrations collected per minute through the real recorder (LeRobotDataset v3).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from vla.bench.report import machine_line
from vla.bench.report import write_section as write
from vla.envs import make_env
from vla.envs.collection import CollectConfig, collect
from vla.envs.experts import make_expert

SECTION = "## Simulation"


def expert_success(suite: str, tasks: list[str], episodes: int, seed: int = 0) -> dict[str, float]:
    """Success rate of the scripted expert per task over `episodes` seeded episodes."""
    rates = {}
    for task in tasks:
        env = make_env(suite, task=task, obs_type="state")
        expert = make_expert(suite)
        wins = 0
        for episode in range(episodes):
            env.reset(seed=seed + episode)
            while True:
                _, _, terminated, truncated, info = env.step(expert(env))
                if terminated or truncated:
                    break
            wins += bool(info["success"])
        rates[task] = wins / episodes
        env.close()
    return rates


def steps_per_second(suite: str, task: str, render: bool, steps: int = 300, **env_kwargs) -> float:
    """Env steps per second under the expert, with or without an image per step.

    The expert's own cost is included (it is tiny next to physics and rendering).
    """
    obs_type = "pixels_agent_pos" if render else "state"
    env = make_env(suite, task=task, obs_type=obs_type, **env_kwargs)
    expert = make_expert(suite)
    env.reset(seed=0)
    env.step(expert(env))  # first render creates the GL context: not part of the rate
    done, start, seed = 0, time.perf_counter(), 1
    while done < steps:
        _, _, terminated, truncated, _ = env.step(expert(env))
        done += 1
        if terminated or truncated:
            env.reset(seed=seed)
            seed += 1
    rate = done / (time.perf_counter() - start)
    env.close()
    return rate


def demos_per_minute(suite: str, tasks: str, episodes_per_task: int, workers: int) -> dict:
    """Collect a small dataset with the real recorder; returns demos/min and the counts."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CollectConfig(
            suite=suite,
            tasks=tasks,
            episodes_per_task=episodes_per_task,
            out=str(Path(tmp) / "ds"),
            workers=workers,
            progress_bar=False,
        )
        start = time.perf_counter()
        progress = collect(cfg)
        seconds = time.perf_counter() - start
    demos = len(progress["episodes"])
    frames = sum(e["length"] for e in progress["episodes"])
    return {
        "demos": demos,
        "frames": frames,
        "seconds": seconds,
        "demos_per_min": 60.0 * demos / seconds,
        "workers": workers,
        "image": f"{cfg.height}x{cfg.width}",
    }


def machine() -> str:
    """A one-line description of where the numbers were taken: CPU model, cores, load, renderer."""
    return f"CPU here: {machine_line()}; {platform.system()}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}"


def render_section(results: dict) -> str:
    """Markdown for the `## Simulation` section from a results dict (see bench_envs.py)."""
    lines = [
        SECTION,
        "",
        f"Written by `scripts/bench_envs.py` on {results['date']} "
        f"({results['machine']}). Do not edit by hand; re-run the script.",
        "",
    ]
    lines += [
        "### Scripted-expert success",
        "",
        "State observations, no rendering; seeds 0..n-1 per task; success = any step "
        "reports success (episodes end at success).",
        "",
        "| suite | tasks | episodes per task | mean success | tasks below 100% |",
        "|---|---|---|---|---|",
    ]
    for name, block in results["success"].items():
        rates = block["rates"]
        below = ", ".join(f"{t} {r:.0%}" for t, r in rates.items() if r < 1.0) or "none"
        lines.append(f"| {name} | {len(rates)} | {block['episodes']} | {np.mean(list(rates.values())):.1%} | {below} |")
    lines += [
        "",
        "<details><summary>Per-task expert success</summary>",
        "",
        "| suite | task | success |",
        "|---|---|---|",
    ]
    for name, block in results["success"].items():
        lines += [f"| {name} | {t} | {r:.0%} |" for t, r in block["rates"].items()]
    lines += [
        "",
        "</details>",
        "",
        "### Env steps per second (one process)",
        "",
        "| suite | task | image | steps/s without render | steps/s with a render per step |",
        "|---|---|---|---|---|",
    ]
    for row in results["speed"]:
        lines.append(
            f"| {row['suite']} | {row['task']} | {row['image']} | {row['no_render']:.0f} | {row['render']:.0f} |"
        )
    lines += [
        "",
        "### Demonstrations collected per minute",
        "",
        "Scripted expert -> LeRobotDataset v3 (AV1 video, one crash-safe transaction per "
        "episode), `workers` rollout processes plus the writer process.",
        "",
        "| suite | tasks | image | workers | demos | frames | seconds | demos/min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["collection"]:
        lines.append(
            f"| {row['suite']} | {row['tasks']} | {row['image']} | {row['workers']} | "
            f"{row['demos']} | {row['frames']} | {row['seconds']:.1f} | "
            f"{row['demos_per_min']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_section(path: str | Path, section: str) -> None:
    """Replace (or append) the `## Simulation` section of a markdown file."""
    write(path, SECTION, section)
