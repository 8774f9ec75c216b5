"""vla.envs: MuJoCo simulation suites, scripted experts and demo recording for LLaDA-VLA.

Modules (one concept each):

- `suites`           the suite registry: every per-suite fact (`SuiteSpec`), entry points by name
- `rendering`        fast CPU render settings, upright camera frames
- `instructions`     canonical task strings and paraphrases
- `metaworld_suite`  Meta-World 3.1.1 tasks / task sets as one gymnasium env, and its expert
- `tabletop`         our language-conditioned tabletop scene (assets/tabletop.xml)
- `experts`          scripted tabletop controllers: expert, language-blind anchor, sweep
- `rollout`          expert episodes as plain arrays (what the recorder writes)
- `recorder`         crash-safe LeRobotDataset v3 writing (one transaction per episode)
- `collection`       parallel, resumable demo collection (scripts/collect_demos.py)
- `evaluation`       closed-loop evaluation: vectorized rollouts, anchors, language ablation
- `eval_report`      what an evaluation reports: eval_info.json, report.md, plot, videos
- `lerobot_configs`  LeRobot EnvConfig plugins (`--env.discover_packages_path=vla.envs`)
- `robot_sim`        a simulated robot for the controller (deployment in simulation)

Importing this package is cheap and torch-free: it sets MUJOCO_GL=egl (unless set) before
anything imports mujoco, and registers the gymnasium ids below (lazy entry points).
`lerobot_configs` is *not* imported here because it imports lerobot (and torch);
LeRobot's plugin loader imports every submodule of `vla.envs` anyway, and Python code
that needs the configs imports `vla.envs.lerobot_configs` explicitly.

    import gymnasium as gym, vla.envs
    env = gym.make("vla/Tabletop-v0", task="push")
    env = gym.make("vla/MetaWorld-v0", task="MT10", camera="corner4")
"""

from __future__ import annotations

import os

from gymnasium.envs.registration import register, registry

from vla.envs.suites import SUITES, get_suite

# The one place MUJOCO_GL is set (neither import above loads mujoco): every other module of this
# package, so every mujoco import of ours, runs after this line, and mujoco reads it when first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

for _spec in SUITES.values():
    if _spec.gym_id not in registry:
        # order_enforce=False: gym.make then returns our env unwrapped (unless a time
        # limit or the env checker is asked for), so LeRobot's `hasattr(env,
        # "task_description")` sees the attribute. Our envs truncate by themselves.
        register(id=_spec.gym_id, entry_point=_spec.env, order_enforce=False)


def make_env(suite: str, **kwargs):
    """Build a suite's env directly: `make_env('tabletop', task='touch')`.

    kwargs go to `MetaWorldEnv` or `TabletopEnv` (task, obs_type, camera, height, width,
    episode_length, terminate_on_success).
    """
    return get_suite(suite).make_env(**kwargs)
