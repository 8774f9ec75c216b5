"""First results on the tabletop suite, regenerated into BENCHMARKS.md by one command.

    python scripts/results_tabletop.py            # pipeline + language ablation + decoder ablation

This module owns what the "Results: tabletop" section of BENCHMARKS.md shows and how it is
measured: the README pipeline (`vla.bench.pipeline`: collect, train the tiny preset, evaluate
on unseen seeds with the expert and random anchors), then on the same checkpoint and seeds

- the language ablation: each instruction swapped for another goal of the same scene
  (success should follow the instruction, not the scene);
- the decoder ablation: HAD vs LLaDA low-confidence vs Fast-dLLM threshold vs left-to-right
  order, with forwards (NFE) per chunk.

Every figure in the section comes from the eval_info.json files this run writes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

from vla.bench.pipeline import PipelineConfig, run_pipeline
from vla.envs.evaluation import EvalConfig, evaluate, load_policy

SECTION = "## Results: tabletop"
# (label, decoder name, steps, threshold): the same 10 forwards per chunk for the fixed-budget
# decoders; HAD at 5 steps commits one whole action per forward; threshold commits every slot
# above its confidence threshold (at least the 10-step schedule's count), so it may use fewer:
# the sweep shows what each threshold trades between forwards and success (Fast-dLLM's 0.9
# was tuned for text, where a near-miss token is wrong; here a neighbouring bin is nearly right).
DECODER_ABLATION = (
    ("HAD (default)", "had", 10, None),
    ("HAD, 5 steps", "had", 5, None),
    ("low_confidence", "low_confidence", 10, None),
    ("threshold 0.9", "threshold", 10, 0.9),
    ("threshold 0.7", "threshold", 10, 0.7),
    ("threshold 0.5", "threshold", 10, 0.5),
    ("threshold 0.3", "threshold", 10, 0.3),
    ("left-to-right", "ar", 10, None),
)


def _ci(block: dict[str, Any], key: str = "") -> str:
    low, high = block[f"success_ci95{key}"]
    return f"{block[f'pc_success{key}']:.1f} [{low:.0f}, {high:.0f}]"


def run_decoder_ablation(checkpoint: str, out: Path, tasks: str, n_episodes: int, workers: int,
                         progress: bool = True, done: dict[str, Any] | None = None
                         ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """-> (eval_info per decoder of DECODER_ABLATION on one checkpoint, same seeds for all; the labels
    evaluated in this call, not read from an earlier run). `done`: an eval_info already measured with
    the checkpoint's own decoder (reused)."""
    policy = load_policy(checkpoint)
    results, measured = {}, []
    for label, name, steps, threshold in DECODER_ABLATION:
        pol = (done or {}).get("policy", {})
        if (pol.get("decoder"), pol.get("decode_steps"), pol.get("threshold")) == (name, steps, threshold):
            results[label] = done
            continue
        path = out / "decoders" / re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") / "eval_info.json"
        if path.is_file():  # finished in an earlier run of the same command
            results[label] = json.loads(path.read_text())
            continue
        policy.policy.set_decoder(name, steps, threshold)
        cfg = EvalConfig(suite="tabletop", tasks=tasks, n_episodes=n_episodes, n_envs=workers,
                         out_dir=str(path.parent), progress=progress)
        results[label] = evaluate(cfg, policy)
        measured.append(label)
    return results, measured


def results_section(summary: dict[str, Any], main: dict[str, Any], swap: dict[str, Any] | None,
                    decoders: dict[str, dict[str, Any]], command: str, machine: str, heading: str = SECTION) -> str:
    """The BENCHMARKS.md section (markdown) under `heading` from this run's eval_info files."""
    anchors = main.get("anchors", {})
    cfg = summary["config"]
    budget = " and ".join(x for x in (f"{cfg['train_minutes']:g} minutes" if cfg.get("train_minutes") else "",
                                      f"{cfg['steps']} steps" if cfg.get("steps") else "") if x)
    probe = summary.get("grounding_probe")
    lines = [
        heading, "",
        f"`{command}` (CPU here: {machine}). Demos: {cfg['episodes_per_task']} scripted-expert episodes per "
        f"family, each scene once per goal; training: `{cfg['preset']}` for {budget} (batch {cfg['batch_size']}, "
        f"{summary.get('train_steps', '?')} updates); evaluation: {main['settings']['n_episodes']} episodes per "
        f"family on seeds disjoint from the demos. Wall time: collect {summary['collect_s'] / 60:.1f} min, train "
        f"{summary['train_s'] / 60:.1f} min, evaluate {summary['eval_s'] / 60:.1f} min (probe, policy, anchors, "
        f"language ablation), decoder ablation {summary['ablation_s'] / 60:.1f} min. Success in % with Wilson 95% "
        "intervals. An episode fails at the first contact with an object the instruction did not name, so a policy "
        "that ignores the instruction scores at most what the language-blind anchor scores (~33% on touch / reach "
        "/ reach_slots, ~11% on push).", "",
        f"| family | LLaDA-VLA {Path(cfg['preset']).stem} (HAD) | " + " | ".join(f"{a} (anchor)" for a in anchors) + " |",
        "|---|---|" + "---|" * len(anchors),
    ]
    for t in main["per_task"]:
        cells = [_ci(t["metrics"])] + [_ci(a["per_task"][t["task"]]) for a in anchors.values()]
        lines.append(f"| {t['task']} | " + " | ".join(cells) + " |")
    lines.append("| **all** | " + " | ".join([_ci(main["overall"])] + [_ci(a["overall"]) for a in anchors.values()])
                 + " |")
    if probe is not None:
        lines += ["", "**Grounding probe** (`scripts/probe_grounding.py`: new scenes, every goal asked from the same "
                  "first frame; how often the first chunk heads for the named target):", "",
                  "| family | heads for the named target | chance |", "|---|---|---|"]
        lines += [f"| {f} | {r['score']:.2f} | {r['chance']:.2f} |" for f, r in probe["per_task"].items()]
        lines.append(f"| **all** | {probe['overall']['score']:.2f} | {probe['overall']['chance']:.2f} |")
    if swap is not None:
        lines += [
            "", "**Language ablation** (same checkpoint and seeds; each instruction replaced by another goal of the "
            "same scene). A policy that follows language scores on the instruction it was given; one that reads the "
            "scene only would keep scoring on the goal the instruction replaced.", "",
            "| family | success on the given (swapped) instruction | success on the replaced goal |", "|---|---|---|",
        ]
        for t in swap["per_task"]:
            lines.append(f"| {t['task']} | {_ci(t['metrics'])} | {_ci(t['metrics'], '_original_goal')} |")
        o = swap["overall"]
        lines.append(f"| **all** | {_ci(o)} | {_ci(o, '_original_goal')} |")
    if decoders:
        names = [t["task"] for t in main["per_task"]]
        lines += [
            "", "**Decoder ablation** (same checkpoint and seeds; NFE = forwards per chunk of "
            f"{next(iter(decoders.values()))['policy'].get('action_slots')} action slots; latency = one policy call "
            "for the batch of env slots during rollouts, shared CPU).", "",
            "| decoder | steps | NFE per chunk | tokens per forward | " + " | ".join(names) + " | all | latency p50 ms |",
            "|---|---|---|---|" + "---|" * len(names) + "---|---|",
        ]
        for label, info in decoders.items():
            pol, per = info["policy"], {t["task"]: t["metrics"] for t in info["per_task"]}
            nfe = pol.get("mean_nfe_per_chunk")
            lat = info["overall"]["latency_ms"].get("p50", float("nan"))
            tpf = pol.get("action_slots", float("nan")) / nfe
            lines.append(f"| {label} | {pol.get('decode_steps')} | {nfe:.2f} | {tpf:.1f} | "
                         + " | ".join(_ci(per[n]) for n in names) + f" | {_ci(info['overall'])} | {lat:.0f} |")
    return "\n".join(lines) + "\n"


def tabletop_results(cfg: PipelineConfig, decoder_ablation: bool = True) -> dict[str, Any]:
    """Run (or finish) the pipeline with the language ablation, then the decoder ablation.

    Returns {summary, main, swap, decoders} (summary as `run_pipeline`'s, plus timings)."""
    cfg = dataclasses.replace(cfg, language_ablation=True)
    summary = run_pipeline(cfg)
    out = Path(cfg.out)
    main = json.loads((out / "eval" / "eval_info.json").read_text())
    swap = json.loads((out / "eval_swap" / "eval_info.json").read_text())
    t = time.time()
    decoders = {}
    timings_file = out / "timings.json"  # the pipeline's; the ablation adds its own wall time once measured
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    if decoder_ablation:
        decoders, measured = run_decoder_ablation(summary["checkpoint"], out, cfg.tasks, cfg.eval_episodes,
                                                  cfg.workers, cfg.progress, done=main)
        if measured or "ablation_s" not in timings:  # a re-run that read results keeps the time
            timings["ablation_s"] = time.time() - t
            timings_file.write_text(json.dumps(timings))
    summary["ablation_s"] = timings.get("ablation_s", time.time() - t)
    summary["config"] = dataclasses.asdict(cfg)
    return {"summary": summary, "main": main, "swap": swap, "decoders": decoders}
