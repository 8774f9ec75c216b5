"""The lerobot internals that vla.policies.lerobot_patches replaces are still there, as it expects them.

lerobot-train has no hooks for atomic checkpoints, the frame cache or the time budget, so the
patch module wraps four globals of `lerobot.scripts.lerobot_train`. If a lerobot upgrade
renames them, changes their parameters or the code around their calls, this test fails and
says what moved (instead of a training run silently losing its crash safety or its budget).
"""

import inspect
import io

import pytest
from lerobot.scripts import lerobot_train

from vla.policies import lerobot_patches


def test_lerobot_internals_are_what_the_patches_wrap():
    lerobot_patches.check_lerobot_internals()


def test_a_changed_internal_fails_loudly_naming_it(monkeypatch):
    def update_policy(metrics, policy, batch, optimizer):  # lost the lr_scheduler keyword
        raise AssertionError("never called")

    monkeypatch.setattr(lerobot_train, "update_policy", update_policy)
    with pytest.raises(RuntimeError, match=r"update_policy has no parameter\(s\) \['train_metrics', 'lr_scheduler'\]"):
        lerobot_patches.check_lerobot_internals()


def test_install_wraps_each_global_once_keeping_the_originals(monkeypatch):
    for name in lerobot_patches.PATCHED:
        monkeypatch.setattr(lerobot_train, name, getattr(lerobot_train, name))  # restored after the test
    originals = {name: inspect.unwrap(getattr(lerobot_train, name)) for name in lerobot_patches.PATCHED}
    lerobot_patches.install()
    first = {name: getattr(lerobot_train, name) for name in lerobot_patches.PATCHED}
    lerobot_patches.install()  # idempotent
    assert first == {name: getattr(lerobot_train, name) for name in lerobot_patches.PATCHED}
    for name in ("save_checkpoint", "make_dataset", "update_policy"):
        assert first[name] is not originals[name] and inspect.unwrap(first[name]) is originals[name]
    assert first["update_last_checkpoint"] is lerobot_patches.atomic_update_last
    lerobot_patches.check_lerobot_internals()  # still passes on the wrapped globals


def test_under_a_time_budget_the_progress_bar_has_no_step_total(monkeypatch):
    for name in lerobot_patches.PATCHED:
        monkeypatch.setattr(lerobot_train, name, getattr(lerobot_train, name))
    monkeypatch.setattr(lerobot_patches, "_BUDGET", {})
    lerobot_patches.install()
    assert lerobot_train.tqdm(total=10**7, desc="Training", disable=True).total == 10**7  # no budget: as LeRobot
    lerobot_patches._BUDGET["seconds"] = 18 * 60.0
    bar = lerobot_train.tqdm(total=10**7, desc="Training", file=io.StringIO())  # the pipeline's placeholder steps
    assert bar.total is None and bar.desc == "Training (18-min budget)"
