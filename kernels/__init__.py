"""Speed layer (`vla.kernels`): Triton kernels with torch references and dispatchers, and decode-speed tooling.

- `lsc_epilogue`: fused LSC head -> softmax -> (argmax, confidence), kernel + wrapper + reference + dispatcher.
- `decode_bench`, `roofline`: the measurement behind `scripts/bench_decode.py` and docs/speed.md.
"""
