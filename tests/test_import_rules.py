"""The layering rules of DESIGN.md section 3, checked on every module's imports (ast-parsed).

    kernels <- vla (core) <- policies <- bench <- scripts;  envs takes any policy callable.

- `kernels/` imports nothing of ours (torch and triton only);
- the core (`vla/`) imports no policies, envs, bench or scripts;
- `envs/` imports neither the core nor kernels (it knows policies only as callables and
  LeRobot checkpoints), nor bench or scripts;
- `policies/` imports no bench or scripts;
- nothing but `bench/` and `scripts/` imports `bench`.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"vla": "core", "kernels": "kernels", "policies": "policies", "envs": "envs", "bench": "bench"}
PACKAGE_OF = {"vla.kernels": "kernels", "vla.policies": "policies", "vla.envs": "envs", "vla.bench": "bench"}
FORBIDDEN = {
    "kernels": {"core", "policies", "envs", "bench", "scripts"},
    "core": {"policies", "envs", "bench", "scripts"},
    "envs": {"core", "kernels", "bench", "scripts"},
    "policies": {"bench", "scripts"},
    "bench": {"scripts"},
}


def layer_of_import(name: str) -> str | None:
    """The project layer a dotted import names (None: not ours)."""
    if name == "scripts" or name.startswith("scripts."):
        return "scripts"
    for prefix, layer in PACKAGE_OF.items():
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return "core" if name == "vla" or name.startswith("vla.") else None


def imports_of(path: Path, package: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names += [f"{base}.{node.module}"] if node.module else [f"{base}.{a.name}" for a in node.names]
            elif node.module == "vla":  # `from vla import model`
                names += [f"vla.{a.name}" for a in node.names]
            else:
                names.append(node.module)
    return names


def edges() -> list[tuple[str, str, str]]:
    """(module file, its layer, imported name) for every import of ours."""
    out = []
    for folder, layer in LAYERS.items():
        package = "vla" if folder == "vla" else f"vla.{folder}"
        for path in sorted((ROOT / folder).rglob("*.py")):
            sub = ".".join(path.relative_to(ROOT / folder).with_suffix("").parts[:-1])
            for name in imports_of(path, f"{package}.{sub}".rstrip(".")):
                if layer_of_import(name) is not None:
                    out.append((str(path.relative_to(ROOT)), layer, name))
    return out


def test_no_module_imports_across_a_forbidden_edge():
    bad = [f"{path} ({layer}) imports {name}" for path, layer, name in edges()
           if layer_of_import(name) in FORBIDDEN[layer]]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("name", "layer"), [("vla.model", "core"), ("vla", "core"), ("vla.kernels.lsc_epilogue", "kernels"),
                                             ("vla.bench.results", "bench"), ("torch", None), ("scripts.x", "scripts")])
def test_imports_are_assigned_to_their_layer(name, layer):
    assert layer_of_import(name) == layer


def test_the_checker_sees_a_forbidden_edge(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from vla.decoders import DecodeConfig\nfrom . import tabletop\n")
    names = imports_of(bad, "vla.envs")
    assert names == ["vla.decoders", "vla.envs.tabletop"]
    assert layer_of_import(names[0]) in FORBIDDEN["envs"]
