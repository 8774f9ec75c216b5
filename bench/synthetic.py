"""A synthetic, language-decisive reaching task for smoke tests and the quickstart.

Each scene shows three colored squares at random places on a dark 96x96 image; the
instruction names one of them ("move to the red square", or a paraphrase). The action
chunk is a straight path of H planar waypoints from the image center to the named
square, in [-1, 1] image coordinates (x right, y down). The image alone does not say
which square is meant, so a model that ignores the instruction reaches the right one
only about 1/3 of the time.

It needs torch only (no simulator, no LeRobot): `scripts/demo_synthetic.py` trains the tiny
model on it in minutes, and `vla.bench.decode_bench` times decoders on its scenes. The
simulated suites (`vla.envs`) are where policies are trained and evaluated for real.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from vla.device import pick_device, use_bf16_autocast
from vla.model import LLaDAVLA, Observation, VLAConfig
from vla.text_tokenizer import TextTokenizer

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
TEMPLATES = ("move to the {} square", "go to the {} square", "reach the {} block", "touch the {} one")


@dataclass
class SyntheticBatch:
    images: torch.Tensor  # (N, 3, S, S) float in [0, 1]
    instructions: list[str]
    actions: torch.Tensor  # (N, H, 2) waypoints toward the named square
    targets: torch.Tensor  # (N, 2) center of the named square
    centers: torch.Tensor  # (N, 3, 2) centers of all squares in the scene
    colors: list[tuple[str, str, str]]  # colors of the three squares
    goal: torch.Tensor  # (N,) long index of the named square


def make_scenes(n: int, chunk_size: int = 5, image_size: int = 96, square: int = 14, seed: int = 0) -> SyntheticBatch:
    """Generate `n` scenes deterministically from `seed`."""
    g = torch.Generator().manual_seed(seed)
    names = list(COLORS)
    images = torch.full((n, 3, image_size, image_size), 0.1)
    centers = torch.zeros(n, 3, 2)
    colors, instructions = [], []
    goal = torch.randint(0, 3, (n,), generator=g)
    margin = square // 2 + 2
    for i in range(n):
        picked = [names[j] for j in torch.randperm(len(names), generator=g)[:3].tolist()]
        colors.append(tuple(picked))
        placed: list[tuple[int, int]] = []
        while len(placed) < 3:  # rejection-sample non-overlapping squares
            cx, cy = torch.randint(margin, image_size - margin, (2,), generator=g).tolist()
            if all(abs(cx - px) > square + 4 or abs(cy - py) > square + 4 for px, py in placed):
                placed.append((cx, cy))
        for k, (cx, cy) in enumerate(placed):
            rgb = torch.tensor(COLORS[picked[k]], dtype=torch.float32)[:, None, None] / 255.0
            h = square // 2
            images[i, :, cy - h : cy + h, cx - h : cx + h] = rgb
            centers[i, k] = torch.tensor([cx, cy], dtype=torch.float32) / (image_size - 1) * 2 - 1
        template = TEMPLATES[int(torch.randint(0, len(TEMPLATES), (1,), generator=g))]
        instructions.append(template.format(picked[int(goal[i])]))
    targets = centers[torch.arange(n), goal]
    frac = torch.arange(1, chunk_size + 1, dtype=torch.float32) / chunk_size
    actions = targets[:, None, :] * frac[None, :, None]
    return SyntheticBatch(images, instructions, actions, targets, centers, colors, goal)


def swap_instructions(batch: SyntheticBatch, seed: int = 1) -> tuple[list[str], torch.Tensor]:
    """Name another square of the same scene -> (new instructions, new goal index)."""
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, 3, (len(batch.instructions),), generator=g)
    new_goal = (batch.goal + shift) % 3
    texts = [f"move to the {batch.colors[i][int(new_goal[i])]} square" for i in range(len(new_goal))]
    return texts, new_goal


def reached(final_xy: torch.Tensor, centers: torch.Tensor, tolerance: float = 0.15) -> torch.Tensor:
    """(N, 2) final waypoint vs (N, 2) square centers -> (N,) bool success."""
    return (final_xy - centers).norm(dim=-1) <= tolerance


def run_demo(minutes: float = 4.0, train_scenes: int = 2048, eval_scenes: int = 256, batch_size: int = 32,
             lr: float = 1e-3, bf16: bool | None = None, seed: int = 0, out_dir: str | None = None) -> dict:
    """Train the tiny preset on synthetic scenes for `minutes`, then evaluate with HAD.

    Returns a dict of results: success with the given instruction, and with each
    instruction swapped for another square of the same scene (success should follow the
    new instruction, not the old goal), plus decode NFE and latency.
    """
    torch.manual_seed(seed)
    dev = pick_device()
    bf16, device = use_bf16_autocast(dev, bf16), dev.type
    data = make_scenes(train_scenes, seed=seed)
    held_out = make_scenes(eval_scenes, seed=seed + 10_000)
    texts = [t.format(c) for t in TEMPLATES for c in COLORS] + [f"move to the {c} square" for c in COLORS]
    tokenizer = TextTokenizer.train(texts, vocab_size=128)
    cfg = VLAConfig.from_flat({"vision_kwargs": {"depth": 4}, **tokenizer.config_fields()}, chunk_size=5,
                              action_dim=2)  # the tiny size
    model = LLaDAVLA(cfg, -torch.ones(2), torch.ones(2)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    ids, mask = tokenizer(data.instructions)

    def obs_for(images, text_ids, text_mask):
        return Observation({"front": images.to(device)}, text_ids.to(device), text_mask.to(device))

    start, step, seen = time.time(), 0, 0
    bar = tqdm(total=int(minutes * 60), desc="train (s)", unit="s")
    g = torch.Generator().manual_seed(seed)
    while time.time() - start < minutes * 60:
        idx = torch.randint(0, train_scenes, (batch_size,), generator=g)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss, metrics = model.compute_loss(obs_for(data.images[idx], ids[idx], mask[idx]), data.actions[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step, seen = step + 1, seen + batch_size
        bar.update(int(time.time() - start) - bar.n)
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{metrics['masked_acc'].item():.2f}", step=step)
    bar.close()
    train_s = time.time() - start

    model.eval()
    swapped_texts, new_goal = swap_instructions(held_out)
    results = {"train_steps": step, "train_samples_per_s": seen / train_s, "bf16": bool(bf16),
               "parameters": model.num_parameters()}
    for label, instructions in (("given", held_out.instructions), ("swapped", swapped_texts)):
        e_ids, e_mask = tokenizer(instructions)
        t0 = time.time()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            actions, res = model.sample_actions(obs_for(held_out.images, e_ids, e_mask))
        final = actions[:, -1].float().cpu()
        idx = torch.arange(eval_scenes)
        if label == "given":
            results["success"] = reached(final, held_out.targets).float().mean().item()
            results["nfe"] = res.nfe
            results["decode_ms_per_chunk"] = (time.time() - t0) / eval_scenes * 1000
        else:
            results["swapped_success_new_goal"] = reached(final, held_out.centers[idx, new_goal]).float().mean().item()
            results["swapped_reached_old_goal"] = reached(final, held_out.targets).float().mean().item()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        tokenizer.save(out)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    return results
