"""Exact dataset quantiles for action tokenization.

LeRobot 0.4.4 computes q01/q99 per episode and aggregates them by averaging, which is not
the quantile of the whole dataset: when episodes cover different ranges (reaching to
different goals), the averaged q99 can sit far inside the data, and QUANTILES
normalization then pushes many actions outside [-1, 1], where the action tokenizer clips
them. `recompute_quantiles(root)` replaces q01..q99 of the low-dimensional features in
`meta/stats.json` by the exact quantiles over all frames.

    python -m vla.policies.stats DATASET_ROOT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def recompute_quantiles(root: str | Path, keys: tuple[str, ...] = ("action", "observation.state")) -> dict:
    """Rewrite exact quantiles of `keys` in `<root>/meta/stats.json`; returns the new stats."""
    root = Path(root)
    stats_file = root / "meta" / "stats.json"
    if not stats_file.is_file():
        raise FileNotFoundError(f"{stats_file} not found; is {root} a LeRobotDataset v3 root?")
    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"no data/*/*.parquet under {root}")
    present = set(pd.read_parquet(files[0]).columns)
    cols = [k for k in keys if k in present]
    frame = pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)
    stats = json.loads(stats_file.read_text())
    for key in cols:
        values = np.stack(frame[key].to_numpy()).astype(np.float64)  # (N, D)
        for name, q in QUANTILES.items():
            stats.setdefault(key, {})[name] = np.quantile(values, q, axis=0).tolist()
    tmp = stats_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(stats, indent=4))
    tmp.replace(stats_file)
    return stats


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    recompute_quantiles(sys.argv[1])
    print(f"exact quantiles written to {Path(sys.argv[1]) / 'meta' / 'stats.json'}")
