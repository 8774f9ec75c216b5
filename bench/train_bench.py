"""Training-throughput measurement for the llada_vla presets on a real LeRobotDataset.

One variant (precision x frame cache) per process, so the peak-memory figure (max RSS) is
that variant's own. The loop is lerobot-train's: DataLoader (shuffled, batch B, workers 0)
-> preprocessor -> forward -> backward -> clip -> AdamW step, timed end to end after a
warm-up, so samples/s includes data loading, video decoding and preprocessing.

    python -m vla.bench.train_bench --dataset DIR --preset configs/tabletop_tiny_cpu.json --bf16 --cache [--previous]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.policies.factory import make_policy, make_pre_post_processors

from vla.bench.recipe import PREVIOUS
from vla.policies import LLaDAVLAConfig
from vla.policies.frame_cache import cache_decoded_frames


def policy_config_from_preset(preset: str | Path, **overrides):
    fields = json.loads(Path(preset).read_text())["policy"]
    fields = {k: v for k, v in fields.items() if k != "type"}
    return LLaDAVLAConfig(**{**fields, **overrides})


def measure(dataset: str, preset: str, bf16: bool, cache: bool, steps: int = 30, batch_size: int = 32,
            warmup: int = 3, threads: int | None = None, overrides: dict | None = None) -> dict:
    """Samples/s and masked targets/s (action slots scored per second: slots x masked share x
    maskings) of `preset` with policy `overrides`, end to end as lerobot-train runs it."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    meta = LeRobotDatasetMetadata("local/bench", root=dataset)
    cfg = policy_config_from_preset(preset, **{"device": "cpu", "use_bf16": bf16, **(overrides or {})})
    policy = make_policy(cfg, ds_meta=meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    deltas = {"action": [i / meta.fps for i in cfg.action_delta_indices]}
    ds = LeRobotDataset("local/bench", root=dataset, delta_timestamps=deltas)
    if cache:
        cache_decoded_frames(ds)
        for i in range(len(ds)):  # one decoding pass, as the first epoch of a run would do
            ds[i]
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=1e-4)
    policy.train()

    def batches():
        while True:
            yield from loader

    it = batches()
    data_s, masked = 0.0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start, data_s = time.perf_counter(), 0.0
        t0 = time.perf_counter()
        batch = pre(next(it))
        data_s += time.perf_counter() - t0
        loss, metrics = policy.forward(batch)
        if step >= warmup:
            masked += metrics["masked_frac"] * policy.model.cfg.action_len * cfg.num_maskings * batch_size
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
    elapsed = time.perf_counter() - start
    return {
        "bf16": bf16, "frame_cache": cache, "batch_size": batch_size, "steps": steps,
        "samples_per_s": steps * batch_size / elapsed, "masked_targets_per_s": masked / elapsed,
        "data_fraction": data_s / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": sum(p.numel() for p in policy.parameters()), "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--preset", required=True)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--cache", action="store_true")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--previous", action="store_true",
                   help="the previous recipe: every lever of vla.bench.recipe turned off (default: the preset's)")
    a = p.parse_args()
    overrides = {k: v for k, v in PREVIOUS.items() if k != "use_bf16"} if a.previous else None
    row = measure(a.dataset, a.preset, a.bf16, a.cache, a.steps, a.batch_size, overrides=overrides)
    print(json.dumps({**row, "recipe": "previous" if a.previous else "recipe"}))


if __name__ == "__main__":
    main()
