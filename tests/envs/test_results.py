"""The tabletop results section (vla.bench.results): rendered from eval_info files as measured."""

from vla.bench.results import results_section


def _block(pc, n=10):
    return {"pc_success": pc, "success_ci95": [max(pc - 20, 0), min(pc + 20, 100)], "n_episodes": n}


def _info(pc, decoder, steps, nfe, slots=20, latency=50.0):
    return {"per_task": [{"task": "reach_fixed", "metrics": _block(pc)}], "overall": {**_block(pc),
            "latency_ms": {"p50": latency}}, "settings": {"n_episodes": 10},
            "policy": {"decoder": decoder, "decode_steps": steps, "mean_nfe_per_chunk": nfe, "action_slots": slots}}


def test_decoder_ablation_reports_tokens_per_forward_from_nfe_and_slots():
    main = _info(100.0, "had", 10, 10.0)
    decoders = {"HAD (default)": main, "threshold 0.9": _info(90.0, "threshold", 10, 2.5)}
    summary = {"config": {"episodes_per_task": 5, "preset": "configs/tabletop_micro_cpu.json", "steps": 7,
                          "batch_size": 4}, "collect_s": 60, "train_s": 120, "eval_s": 30, "ablation_s": 90}
    md = results_section(summary, main, None, decoders, "python scripts/results_tabletop.py", "test", "## R")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    assert rows["HAD (default)"][2:4] == ["10.00", "2.0"]  # NFE, tokens per forward = 20 slots / 10
    assert rows["threshold 0.9"][2:4] == ["2.50", "8.0"]
    assert "90.0 [70, 100]" in rows["threshold 0.9"]
    assert md.startswith("## R") and "decoder ablation 1.5 min" in md
