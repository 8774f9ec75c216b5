"""Train the tiny LLaDA-VLA on a synthetic language-decisive reaching task and evaluate it.

    python scripts/demo_synthetic.py --minutes 4 --out outputs/synthetic_demo

Prints success with the given instructions and with instructions swapped for another
object of the same scene (success should follow the instruction). See bench/synthetic.py.
"""

import argparse
import json

from vla.bench.synthetic import run_demo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget")
    p.add_argument("--train-scenes", type=int, default=2048)
    p.add_argument("--eval-scenes", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="bf16 autocast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/synthetic_demo", help="where the model and results go")
    a = p.parse_args()
    bf16 = {"auto": None, "on": True, "off": False}[a.bf16]
    results = run_demo(a.minutes, a.train_scenes, a.eval_scenes, a.batch_size, a.lr, bf16, a.seed, a.out)
    print(json.dumps(results, indent=2))
    print(f"success {results['success']:.1%} with the given instruction; "
          f"{results['swapped_success_new_goal']:.1%} follow a swapped instruction "
          f"(a policy that reaches a square but ignores the instruction: ~33%); model and results in {a.out}")


if __name__ == "__main__":
    main()
