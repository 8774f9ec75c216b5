"""Try every bad input of vla/bench/bad_inputs.py on the entry points; rewrite docs/errors.md's table.

    python scripts/bad_inputs.py [--doc docs/errors.md]

Each case runs as a subprocess in a scratch folder of fixtures (a dataset stub, checkpoints with
a truncated or broken file). Prints the cases whose exit code is not 2, whose message is not one
line, or which lack their expected text, and exits 1 if there are any.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from vla.bench.bad_inputs import CASES, make_fixtures, render, run_case, write_table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--doc", default=str(Path(__file__).resolve().parents[1] / "docs" / "errors.md"))
    a = p.parse_args()
    results, bad = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_fixtures(Path(tmp))
        for case in CASES:
            code, lines = run_case(case, folder)
            results.append((case, code, lines))
            ok = code == 2 and len(lines) == 1 and case.expect in lines[0]
            print(f"{'ok ' if ok else 'BAD'} {case.script} {' '.join(case.args)}: {' / '.join(lines)[:160]}",
                  flush=True)
            bad += [] if ok else [case]
    write_table(Path(a.doc), render(results))
    print(f"wrote {a.doc}: {len(results)} cases, {len(bad)} not answered with one line and exit code 2")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
