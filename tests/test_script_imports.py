"""Every name the entry points import from the project exists.

Scripts import lazily inside `main()` (fast `--help` and bad-input errors), so a module moved
between layers breaks a script only when someone runs it: `scripts/bench_envs.py` imported
`vla.envs.benchmark` for a week after it moved to `vla.bench`. This walks every `from vla...
import name` in scripts/ (at any depth) and checks the module resolves and has the name.
"""

import ast
import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


def project_imports(path: Path) -> list[tuple[str, str | None]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vla":
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.split(".")[0] == "vla"]
    return out


def test_scripts_found():
    assert len(SCRIPTS) >= 10 and any(project_imports(p) for p in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_imports_resolve(script: Path):
    missing = []
    for module, name in project_imports(script):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            missing.append(f"{module} ({e})")
            continue
        if name is not None and not hasattr(mod, name):
            try:  # `from package import submodule`
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{script.name} imports names that do not exist: {missing}"
