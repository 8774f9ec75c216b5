"""vla.policies: the LeRobot policy plugin `llada_vla`, the policy server, and the torch-free
client and controller (`vla.policies.client`, `vla.policies.controller`).

Imports are lazy (PEP 562) so that `import vla.policies.client` on a robot computer never
pulls in torch or lerobot. LeRobot's `--policy.discover_packages_path=vla.policies` imports
every submodule, which registers the config (`--policy.type=llada_vla`) and processor steps.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "LLaDAVLAConfig": "configuration_llada_vla",
    "make_llada_vla_pre_post_processors": "processor_llada_vla",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
