"""Serve a trained policy to robot controllers over websockets (msgpack, numpy typed buffers).

    python scripts/serve.py --policy.path=outputs/train/run/checkpoints/last/pretrained_model --port 8000
    curl http://127.0.0.1:8000/healthz

Clients: `vla.policies.client.PolicyClient("ws://HOST:8000", token=...)`; protocol and
design in docs/deployment.md. Prints one line `serving ... on ws://HOST:PORT` once ready
(with --port 0 the OS picks the port). The token may also come from $VLA_SERVE_TOKEN.

Before listening it warms up with real-shaped requests (random images, several instruction
lengths), so the first client request runs at steady-state latency; with --compile the
warm-up pays the compilation, and a line says so while it runs. Bad input fails with one line
and exit code 2 before the policy loads (`--debug`: the traceback; docs/errors.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from vla import cli
from vla.policies.preflight import pretrained_dir
from vla.policies.server import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PENDING, LeRobotPolicyBackend, PolicyServer


def main(argv: list[str] | None = None) -> None:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy.path", dest="policy_path", required=True, help="a pretrained_model directory")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    parser.add_argument("--device", default=None, help="cpu / cuda / mps (default: the policy config's)")
    parser.add_argument("--control-hz", type=float, default=None, help="default: the training dataset's fps, else 20")
    parser.add_argument("--token", default=os.environ.get("VLA_SERVE_TOKEN"), help="shared secret clients must send")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES)
    parser.add_argument("--max-pending", type=int, default=DEFAULT_MAX_PENDING,
                        help="requests one connection may pipeline; later ones get an error frame naming this")
    parser.add_argument("--action-names", default=None, help="comma-separated, one per action dimension")
    parser.add_argument("--state-names", default=None, help="comma-separated, one per state dimension")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up inference before listening")
    parser.add_argument("--bf16-weights", action="store_true",
                        help="store weights in bf16 (faster on GPUs and CPUs with AMX / AVX512-BF16; docs/speed.md)")
    parser.add_argument("--allow-emulated-bf16", action="store_true",
                        help="keep --bf16-weights on a CPU without native bf16 (slower than fp32 there)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compiles during warm-up)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 0 <= args.port <= 65535:
        raise cli.UsageError(f"--port {args.port}: use 0-65535 (0: any free port)")
    cli.require_positive(args, "control_hz", "max_message_bytes", "max_pending")
    pretrained_dir(args.policy_path)

    names = {k: v.split(",") for k, v in (("action_names", args.action_names), ("state_names", args.state_names)) if v}
    with cli.user_errors(FileNotFoundError, ValueError):
        backend = LeRobotPolicyBackend.from_pretrained(args.policy_path, device=args.device, control_hz=args.control_hz,
                                                       bf16_weights=args.bf16_weights, compile=args.compile,
                                                       allow_emulated_bf16=args.allow_emulated_bf16, **names)
    if args.compile:
        print("compiling the model (torch.compile) during the warm-up: the first warm-up requests take ~10-40 s on "
              "a 2-core CPU" if not args.no_warmup else
              "--compile with --no-warmup: the first client requests will pay the compilation (~10-40 s)", flush=True)
    if not args.no_warmup:
        latencies = backend.warmup()
        print(f"warm-up: {len(latencies)} requests, {' / '.join(f'{ms:.0f}' for ms in latencies)} ms "
              f"(steady state ~{latencies[-1]:.0f} ms)", flush=True)
    server = PolicyServer(backend, host=args.host, port=args.port, token=args.token,
                          max_message_bytes=args.max_message_bytes, max_pending=args.max_pending)
    meta = backend.metadata

    def ready(port: int) -> None:
        print(f"serving {meta.policy} (chunk {meta.chunk_size}x{meta.action_dim}, cameras {meta.cameras}, "
              f"{meta.control_hz:g} Hz) on ws://{args.host}:{port} (health: http://{args.host}:{port}/healthz, "
              f"auth: {'token' if args.token else 'none'})", flush=True)

    try:
        server.serve_forever(on_ready=ready)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    cli.run(main)
