"""scripts/install.sh: two clones installing at once both succeed, and each clone's VLA_PY
(and its console scripts) runs that clone's code whichever installed last.

Nothing is downloaded: VLA_VENV points at a stand-in for a complete shared environment, a
venv whose .pth file lends it this interpreter's packages (setuptools, pip, torch, ...),
so only the per-clone environments are made, as on a machine where the stack is cached.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_clone(dst: Path) -> Path:
    """The tracked and untracked (not ignored) files of this checkout, as a second clone would hold them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            (dst / name).write_bytes((ROOT / name).read_bytes())
    return dst


def shared_env(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = Path(subprocess.run([str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    lent = [p for p in sys.path if p.endswith("site-packages")] + [sysconfig.get_paths()["purelib"]]
    (site / "_lent.pth").write_text("\n".join(dict.fromkeys(lent)) + "\n")  # pip comes from here: .pth files work
    # what an environment made by the former install.sh holds: an editable install linked to some clone
    (site / "__editable__.llada_vla-0.1.0.pth").write_text("import os; os.environ['VLA_OLD_LINK'] = '1'\n")
    script = path / "bin" / "vla-where"  # a console script, as pip writes them (shebang: the shared python)
    script.write_text(f"#!{path / 'bin' / 'python'}\nimport vla\nprint(vla.__path__[0])\n")
    script.chmod(0o755)
    (path / ".complete").touch()
    return path


def exports(stdout: str) -> dict[str, str]:
    lines = [line.removeprefix("export ").split("=", 1) for line in stdout.splitlines()]
    return {k: v.strip('"') for k, v in lines}


def test_two_clones_install_at_once_and_each_runs_its_own_code(tmp_path):
    shared = shared_env(tmp_path / "shared")
    before = sorted(p.name for p in (shared / "lib").rglob("*"))
    clones = [copy_clone(tmp_path / name) for name in ("a", "b")]
    env = {**os.environ, "VLA_VENV": str(shared), "PYTHON": sys.executable}
    # both clones at once, and the first one twice (its own environment's lock)
    procs = [subprocess.Popen(["bash", str(c / "scripts" / "install.sh")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in (*clones, clones[0])]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    got = [exports(out) for out, _ in outs]
    assert got[0] == got[2] and got[0]["VLA_PY"] != got[1]["VLA_PY"]
    last = exports(subprocess.run(["bash", str(clones[1] / "scripts" / "install.sh")], env=env, capture_output=True,
                                  text=True, check=True).stdout)  # b installed last: a is unaffected
    assert last == got[1]
    for clone, e in zip(clones, got[:2], strict=True):
        # from a neutral folder: `python -c` puts the working directory first on sys.path
        where = subprocess.run([e["VLA_PY"], "-c", "import os, vla.cli; print(vla.cli.__file__, 'VLA_OLD_LINK' in os.environ)"],
                               capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
        assert where == f"{clone / 'vla' / 'cli.py'} False"  # and the old link in the shared environment is skipped
        path = e["PATH"].replace("$PATH", os.environ["PATH"])
        script = subprocess.run(["vla-where"], env={**os.environ, "PATH": path}, capture_output=True, text=True,
                                check=True, cwd=tmp_path).stdout.strip()
        assert script == str(clone / "vla")  # the console script runs with the clone's interpreter
    assert sorted(p.name for p in (shared / "lib").rglob("*")) == before  # the shared environment is untouched
