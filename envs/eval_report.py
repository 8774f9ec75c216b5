"""Evaluation results: per-episode records -> LeRobot's `eval_info.json`, a report, a plot.

This module owns the numbers an evaluation reports and how they are written; the rollouts
themselves live in `vla.envs.evaluation`. Torch-free (numpy, matplotlib, Pillow, imageio).

`eval_info.json` follows lerobot 0.4.4's `lerobot_eval.eval_policy_all` schema, so tools that
read LeRobot evaluations read ours:

    per_task:  [{task_group, task_id, metrics: {sum_rewards, max_rewards, successes,
                 video_paths}}, ...]          (lists: one entry per episode)
    per_group: {group: {avg_sum_reward, avg_max_reward, pc_success, n_episodes, video_paths}}
    overall:   {avg_sum_reward, avg_max_reward, pc_success, n_episodes, eval_s, eval_ep_s,
                video_paths}

plus our extras: `task` (name) per task; per-episode `seeds`, `instructions`, `episode_lengths`,
`ended_by` (success / wrong contact: what / timeout) and `episode_videos` (path or null) in
per-task metrics;
`mean_episode_length` and `success_ci95` (Wilson 95% interval, in percent) in every metrics
block; `latency_ms` in `overall`; top-level `policy` and `settings`. The language ablation adds
`original_instructions`, `successes_original_goal` and `pc_success_original_goal` /
`success_ci95_original_goal` next to each success figure.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass
class EpisodeResult:
    """One evaluated episode. `success_original` is set only in the language ablation: it
    says whether the goal the instruction was swapped *away from* was reached."""

    task: str
    task_group: str
    task_id: int
    episode_index: int
    seed: int
    instruction: str
    success: bool
    sum_reward: float
    max_reward: float
    length: int
    original_instruction: str | None = None
    success_original: bool | None = None
    video_path: str | None = None
    ended_by: str = ""  # success | wrong contact: <what> | timeout | terminated


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (fractions in [0, 1]).

    Unlike the normal approximation it stays inside [0, 1] and is informative at 0/n and
    n/n, which is where small evaluations live. n = 0 gives (0, 1): nothing is known.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)  # exact at the ends (no 0.9999999)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def _success_block(flags: list[bool], key: str = "") -> dict[str, Any]:
    """pc_success + Wilson interval (both in percent) for a list of episode outcomes."""
    k, n = int(sum(flags)), len(flags)
    low, high = wilson_interval(k, n)
    return {f"pc_success{key}": 100.0 * k / n if n else float("nan"), f"success_ci95{key}": [100 * low, 100 * high]}


def _aggregate(eps: list[EpisodeResult]) -> dict[str, Any]:
    out = {
        "avg_sum_reward": _mean([e.sum_reward for e in eps]),
        "avg_max_reward": _mean([e.max_reward for e in eps]),
        **_success_block([e.success for e in eps]),
        "n_episodes": len(eps),
        "mean_episode_length": _mean([e.length for e in eps]),
        "video_paths": [e.video_path for e in eps if e.video_path],
    }
    if eps and eps[0].success_original is not None:
        out.update(_success_block([bool(e.success_original) for e in eps], "_original_goal"))
    return out


ANCHOR_COLORS = {"expert": "#55a868", "random": "#8c8c8c"}


def latency_summary(latencies_ms: list[float], batch_sizes: list[int]) -> dict[str, Any]:
    """p50 / p99 / mean milliseconds per policy call (one call = one chunk for a batch)."""
    if not latencies_ms:
        return {"n_calls": 0}
    arr = np.asarray(latencies_ms)
    return {
        "n_calls": len(arr),
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
        "mean_batch_size": float(np.mean(batch_sizes)),
    }


def build_eval_info(
    episodes: list[EpisodeResult],
    eval_s: float,
    latency: dict[str, Any],
    policy: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Aggregate episode records into LeRobot's eval_info schema plus our extras."""
    by_task: dict[tuple[str, int, str], list[EpisodeResult]] = defaultdict(list)
    for e in sorted(episodes, key=lambda e: (e.task_id, e.task, e.episode_index)):
        by_task[(e.task_group, e.task_id, e.task)].append(e)
    per_task = []
    for (group, task_id, task), eps in by_task.items():
        metrics: dict[str, Any] = {
            "sum_rewards": [e.sum_reward for e in eps],
            "max_rewards": [e.max_reward for e in eps],
            "successes": [e.success for e in eps],
            "video_paths": [e.video_path for e in eps if e.video_path],
            "seeds": [e.seed for e in eps],
            "instructions": [e.instruction for e in eps],
            "episode_lengths": [e.length for e in eps],
            "ended_by": [e.ended_by for e in eps],
            "episode_videos": [e.video_path for e in eps],
            "mean_episode_length": _mean([e.length for e in eps]),
            **_success_block([e.success for e in eps]),
        }
        if eps[0].success_original is not None:
            metrics["original_instructions"] = [e.original_instruction for e in eps]
            metrics["successes_original_goal"] = [bool(e.success_original) for e in eps]
            metrics.update(_success_block(metrics["successes_original_goal"], "_original_goal"))
        per_task.append({"task_group": group, "task_id": task_id, "task": task, "metrics": metrics})
    groups: dict[str, list[EpisodeResult]] = defaultdict(list)
    for e in episodes:
        groups[e.task_group].append(e)
    overall = _aggregate(episodes)
    overall["eval_s"] = eval_s
    overall["eval_ep_s"] = eval_s / max(1, len(episodes))
    overall["latency_ms"] = latency
    return {
        "per_task": per_task,
        "per_group": {g: _aggregate(eps) for g, eps in groups.items()},
        "overall": overall,
        "policy": policy,
        "settings": settings,
    }


def _fmt_ci(block: dict[str, Any], key: str = "") -> str:
    low, high = block[f"success_ci95{key}"]
    return f"{block[f'pc_success{key}']:.1f} [{low:.1f}, {high:.1f}]"


def link(path: str, base: str | Path | None) -> str:
    """`path` as a link from a file in folder `base` (None: as recorded). Paths in eval_info
    are relative to the evaluation's working directory or absolute; a report links them
    relative to its own folder, so the links work wherever the folder is opened or moved."""
    if base is None:
        return path
    return Path(os.path.relpath(Path(path).absolute(), Path(base).absolute())).as_posix()


def _outcome(success: bool, ended_by: str) -> tuple[str, str]:
    """(outcome, why it ended) of one episode; `ended_by` is empty in eval_info files that predate it."""
    return ("success" if success else "failure"), (ended_by or ("success" if success else "?"))


def episodes_table(info: dict[str, Any], base: str | Path | None = None) -> list[str]:
    """Markdown rows, one per episode: task, seed, instruction, length, outcome, why it ended, video."""
    swap = bool(info["per_task"]) and "successes_original_goal" in info["per_task"][0]["metrics"]
    head = "| task | seed | instruction | length | outcome | why it ended |"
    if swap:
        head += " replaced goal reached |"
    lines = [head + " video |", "|" + "---|" * (head.count("|"))]
    for t in info["per_task"]:
        m = t["metrics"]
        n = len(m["successes"])
        ended = m.get("ended_by") or [""] * n
        videos = m.get("episode_videos") or [None] * n
        for i in range(n):
            outcome, why = _outcome(m["successes"][i], ended[i])
            instruction = m["instructions"][i].replace("|", "/")
            row = f"| {t['task']} | {m['seeds'][i]} | {instruction} | {m['episode_lengths'][i]} | {outcome} | {why} |"
            if swap:
                row += f" {'yes' if m['successes_original_goal'][i] else 'no'} |"
            video = videos[i]
            row += f" [{Path(video).name}]({link(video, base)}) |" if video else " |"
            lines.append(row)
    return lines


def markdown_report(info: dict[str, Any], base: str | Path | None = None) -> str:
    """A human-readable summary of `eval_info` (the report.md next to eval_info.json). `base`:
    the report's folder, which video links are written relative to (None: paths as recorded)."""
    s, o, pol = info["settings"], info["overall"], info["policy"]
    swap = "pc_success_original_goal" in o
    lines = [
        f"# Evaluation: {pol.get('name', '?')} on {s['suite']} ({s['tasks']})",
        "",
        f"- policy: {pol.get('description', pol.get('name'))}",
        f"- episodes: {o['n_episodes']} ({s['n_episodes']} per task), seeds {s['seed_base']} + i "
        "(disjoint from demonstration seeds, see docs/evaluation.md)",
        f"- success: **{_fmt_ci(o)}** % (Wilson 95% interval); an episode succeeds if any step reports success",
        f"- mean episode length: {o['mean_episode_length']:.1f} steps (max {s['episode_length']})",
        f"- wall time: {o['eval_s']:.1f} s ({o['eval_ep_s']:.2f} s per episode, {s['n_envs']} env processes)",
    ]
    lat = o.get("latency_ms", {})
    if lat.get("n_calls"):
        lines.append(f"- policy latency per chunk: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms "
                     f"(mean batch {lat['mean_batch_size']:.1f}, {lat['n_calls']} calls)")
    if pol.get("mean_nfe_per_chunk") is not None:
        lines.append(f"- decoder: {pol.get('decoder')} ({pol.get('decode_steps')} steps), "
                     f"{pol['mean_nfe_per_chunk']:.2f} forwards per chunk of {pol.get('action_slots')} action slots")
    lines.append(f"- chunk execution: {s['execution']}")
    if swap:
        lines += [
            "",
            "**Language ablation** (`--swap-instructions`): each episode's instruction was replaced by another "
            "goal of the same scene. *Swapped goal* = success on the instruction the policy was given (a "
            "language-following policy keeps its usual success); *original goal* = success on the goal it "
            "replaced (a policy that ignores language keeps *this* one high).",
            "",
            f"- swapped goal: {_fmt_ci(o)} %; original goal: {_fmt_ci(o, '_original_goal')} %",
        ]
    head = "| task | group | episodes | success % [95% CI] | mean length |"
    rule = "|---|---|---|---|---|"
    if swap:
        head, rule = head + " original-goal success % [95% CI] |", rule + "---|"
    lines += ["", "## Per task", "", head, rule]
    for t in info["per_task"]:
        m = t["metrics"]
        row = f"| {t['task']} | {t['task_group']} | {len(m['successes'])} | {_fmt_ci(m)} | {m['mean_episode_length']:.1f} |"
        if swap:
            row += f" {_fmt_ci(m, '_original_goal')} |"
        lines.append(row)
    lines += ["", "## Per group", "", "| group | episodes | success % [95% CI] |", "|---|---|---|"]
    for g, m in info["per_group"].items():
        lines.append(f"| {g} | {m['n_episodes']} | {_fmt_ci(m)} |")
    anchors = info.get("anchors", {})
    if anchors:
        names = list(anchors)
        lines += ["", "## Anchors (same tasks and seeds)", "",
                  "The scripted expert (privileged state) bounds success from above, uniform random actions "
                  "from below; the policy's number means something between the two.", "",
                  "| task | " + " | ".join([pol.get("name", "policy"), *names]) + " |",
                  "|---|" + "---|" * (1 + len(names))]
        for t in info["per_task"]:
            cells = [_fmt_ci(t["metrics"])] + [_fmt_ci(anchors[a]["per_task"][t["task"]]) for a in names]
            lines.append(f"| {t['task']} | " + " | ".join(cells) + " |")
        cells = [_fmt_ci(o)] + [_fmt_ci(anchors[a]["overall"]) for a in names]
        lines.append("| **overall** | " + " | ".join(cells) + " |")
    lines += ["", "## Episodes", "",
              "Why an episode ended: *success*; *wrong contact* (tabletop: the first contact with an object or "
              "zone the instruction did not name ends the episode as a failure); *timeout* (the step limit).", "",
              *episodes_table(info, base)]
    videos = o.get("video_paths", [])
    if videos:
        lines += ["", "## Videos", ""] + [f"- [{Path(v).name}]({link(v, base)})" for v in videos]
    return "\n".join(lines) + "\n"


def _bars(ax, x, pc, ci, width: float, color: str, label: str) -> None:
    """Success bars with Wilson intervals and their value written above each; a 0% bar shows
    as a line in its color on the zero line (the axis starts below 0), so it reads as
    measured-zero rather than missing."""
    pc, ci = np.asarray(pc, float), np.asarray(ci, float).reshape(-1, 2)
    err = np.clip(np.stack([pc - ci[:, 0], ci[:, 1] - pc]), 0.0, None)
    ax.bar(x, pc, width, yerr=err, capsize=2, color=color, edgecolor=color, linewidth=1.2, label=label)
    for xi, value, high in zip(x, pc, ci[:, 1], strict=True):
        ax.text(xi, high + 1.5, f"{value:.0f}", ha="center", va="bottom", fontsize=7)


def success_figure(info: dict[str, Any]):
    """The matplotlib figure of `plot_success` (tests read its bars and labels); a bare `Figure`,
    so no pyplot backend or global figure state is touched."""
    tasks = info["per_task"]
    names = [t["task"] for t in tasks]
    anchors = info.get("anchors", {})
    width = 0.8 / (1 + len(anchors))
    swap = bool(tasks) and "pc_success_original_goal" in tasks[0]["metrics"]
    legend = swap or bool(anchors)  # drawn outside the axes, right, so it never hides a bar or its value
    fig = Figure(figsize=(max(4.0, 0.45 * (1 + len(anchors)) * len(names) + 1.5) + 1.8 * legend, 3.6))
    ax = fig.subplots()
    x = np.arange(len(names))
    label = "instructed (swapped) goal" if swap else info["policy"].get("name", "success")
    offset = -0.4 + width / 2
    _bars(ax, x + offset, [t["metrics"]["pc_success"] for t in tasks], [t["metrics"]["success_ci95"] for t in tasks],
          width, "#4c72b0", label)
    for k, (name, a) in enumerate(anchors.items(), start=1):
        _bars(ax, x + offset + k * width, [a["per_task"][n]["pc_success"] for n in names],
              [a["per_task"][n]["success_ci95"] for n in names], width, ANCHOR_COLORS.get(name, "#8172b3"),
              f"{name} (anchor)")
    if swap:
        orig = [t["metrics"]["pc_success_original_goal"] for t in tasks]
        ax.scatter(x + offset, orig, color="#dd8452", zorder=3, label="original goal")
    if legend:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xticks(x, names, rotation=60 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center",
                  fontsize=8)
    ax.axhline(0, color="#bbbbbb", linewidth=0.6, zorder=0)
    ax.set_ylim(-4, 112)
    ax.set_ylabel("success % (95% Wilson CI)")
    overall = info["overall"]
    ax.set_title(f"{info['policy'].get('name', '')}: {_fmt_ci(overall)} % over {overall['n_episodes']} episodes",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_success(info: dict[str, Any], path: str | Path) -> Path:
    """Per-task success bars with Wilson 95% intervals and their values (PNG)."""
    path = Path(path)
    success_figure(info).savefig(path, dpi=120)
    return path


OUTCOME_COLORS = {True: (90, 230, 120), False: (255, 110, 90)}  # success green, failure red (RGB)


def annotate_frames(frames: list[np.ndarray], instruction: str, outcome: str, success: bool,
                    hold: int = 0) -> list[np.ndarray]:
    """Frames with the instruction written across the top and `step t/T` plus the episode's
    outcome (in green or red) across the bottom, on translucent bands; the last frame is
    repeated `hold` more times so the ending can be read. Text scales with the frame width,
    so videos rendered larger than the policy's input (`EvalConfig.video_size`) stay legible."""
    if not frames:
        return []
    h, w = np.asarray(frames[0]).shape[:2]
    size = max(8, w // 20)
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    lines = textwrap.wrap(instruction, width=max(8, int(w / (0.55 * size)))) or [""]
    top = len(lines) * (size + 2) + 4
    out = []
    for t, frame in enumerate(frames):
        img = Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB")
        draw = ImageDraw.Draw(img, "RGBA")
        draw.rectangle([0, 0, w, top], fill=(0, 0, 0, 160))
        for k, line in enumerate(lines):
            draw.text((4, 2 + k * (size + 2)), line, fill=(255, 255, 255), font=font)
        draw.rectangle([0, h - size - 6, w, h], fill=(0, 0, 0, 160))
        draw.text((4, h - size - 4), f"step {t}/{len(frames) - 1}", fill=(255, 255, 255), font=font)
        draw.text((w - 4 - draw.textlength(outcome, font=font), h - size - 4), outcome,
                  fill=OUTCOME_COLORS[bool(success)], font=font)
        out.append(np.asarray(img))
    return out + [out[-1]] * hold


def write_video(frames: list[np.ndarray], path: str | Path, fps: int) -> Path:
    """Encode HxWx3 uint8 frames as an H.264 mp4 (imageio's ffmpeg plugin, shipped with lerobot)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, [np.asarray(f) for f in frames], fps=fps, macro_block_size=1)
    return path


def write_outputs(info: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write eval_info.json, report.md and success.png into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "eval_info.json", "report": out / "report.md", "plot": out / "success.png"}
    paths["json"].write_text(json.dumps(info, indent=2))
    paths["report"].write_text(markdown_report(info, base=out))
    plot_success(info, paths["plot"])
    return paths
