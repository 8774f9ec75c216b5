"""Speed layer (`vla.kernels`): Triton kernels with torch references and dispatchers.

- `lsc_epilogue`: fused LSC head -> softmax -> (argmax, confidence), kernel + wrapper + reference + dispatcher.

Imports torch and triton only; the decode-speed measurement lives in `vla.bench`.
"""
