"""Train LLaDA-VLA with LeRobot's training loop from a named preset.

    python scripts/train.py --config configs/tabletop_tiny_cpu.json --dataset.root=DIR [--key=value ...]
    python scripts/train.py --config_path=OUT/checkpoints/last/pretrained_model/train_config.json --resume=true

Any `lerobot-train` option may follow as an override. `--max-minutes=M` stops training after
M minutes of updates (the last step is checkpointed) whatever `--steps` says: comparisons at
an equal wall-clock budget. Checkpoints are written atomically
(see vla.policies.training); the resolved config is saved with every checkpoint. Decoded
video frames are cached in memory after the first epoch (`--no-frame-cache` to disable).
A resume whose checkpoint has a broken file takes the newest whole checkpoint, with a
warning. Bad input fails with one line and exit code 2 (`--debug`: the traceback; docs/errors.md).
"""

import sys

from vla import cli
from vla.policies.training import main

if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
    else:
        cli.run(main)
