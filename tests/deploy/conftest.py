"""Fixtures of the deployment tests: a tiny untrained tabletop policy and a served copy of it.

The policy's weights are random (greedy decoding is still deterministic), so tests compare
behaviour between serving paths, never success rates against a threshold.
"""

from __future__ import annotations

import pytest

TINY = dict(image_size=32, vision_kwargs={"depth": 1}, d_model=64, n_layers=2, n_heads=4, mlp_hidden=128,
            use_bf16=False, decode_steps=4)


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory):
    """Random init gives nearly constant actions; doubled weights make them depend on the
    observation, so comparing served and in-process actions means something."""
    import torch

    from vla.envs.robot_sim import save_untrained_policy
    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    torch.manual_seed(0)
    path = save_untrained_policy(tmp_path_factory.mktemp("policy") / "tiny", suite="tabletop", **TINY)
    policy = LLaDAVLAPolicy.from_pretrained(path)
    with torch.no_grad():
        for p in policy.parameters():
            if p.ndim >= 2:
                p.mul_(2.0)
    policy.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def backend(policy_dir):
    from vla.policies.server import LeRobotPolicyBackend

    return LeRobotPolicyBackend.from_pretrained(policy_dir, device="cpu", control_hz=20.0)


@pytest.fixture(scope="module")
def server(backend):
    """An in-process server on 127.0.0.1 (ephemeral port) with token auth; -> (server, url)."""
    from vla.policies.server import PolicyServer

    srv = PolicyServer(backend, host="127.0.0.1", port=0, token="test-token", max_message_bytes=256 * 1024)
    port = srv.start()
    yield srv, f"ws://127.0.0.1:{port}"
    srv.stop()
