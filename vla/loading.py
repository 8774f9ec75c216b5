"""Load LLaDA / LLaDA-V language-model weights from a local checkpoint directory.

A checkpoint directory holds `config.json` and safetensors weights (one
`model.safetensors` or shards listed in `model.safetensors.index.json`). Two published
naming schemes are understood:

- LLaDA-8B (`GSAI-ML/LLaDA-8B-*`, OLMo-derived): `model.transformer.wte`,
  `model.transformer.blocks.N.{attn_norm,q_proj,k_proj,v_proj,attn_out,ff_norm,ff_proj,
  up_proj,ff_out}`, `model.transformer.ln_f`, `model.transformer.ff_out`; config fields
  `d_model`, `n_layers`, `n_heads`, `n_kv_heads`, `mlp_hidden_size`, `rope_theta`, ...
- LLaDA-V (LLaVA codebase, Llama-style): `model.embed_tokens`, `model.layers.N.self_attn.
  {q,k,v,o}_proj`, `model.layers.N.mlp.{gate,up,down}_proj`, `input_layernorm`,
  `post_attention_layernorm`, `model.norm`, `lm_head`; config `hidden_size`, ...
  Vision tower and projector tensors in the same files are ignored here.

Our parameter names are LLaDA-8B's without the `model.transformer.` prefix. After loading,
the embedding and head grow by K rows for the action tokens (`resize_vocab`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open

from vla.backbone import BackboneConfig, LLaDABackbone

LLAMA_TO_OURS = {
    "self_attn.q_proj": "q_proj",
    "self_attn.k_proj": "k_proj",
    "self_attn.v_proj": "v_proj",
    "self_attn.o_proj": "attn_out",
    "mlp.gate_proj": "ff_proj",
    "mlp.up_proj": "up_proj",
    "mlp.down_proj": "ff_out",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ff_norm",
}


def read_backbone_config(path: str | Path) -> tuple[BackboneConfig, str]:
    """config.json -> (BackboneConfig, naming scheme 'llada' or 'llama')."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} not found; a LLaDA checkpoint directory needs config.json + safetensors")
    raw = json.loads(cfg_file.read_text())
    raw = raw.get("text_config", raw)
    if "d_model" in raw:  # LLaDA-8B (OLMo-style) config
        cfg = BackboneConfig(
            d_model=raw["d_model"], n_layers=raw["n_layers"], n_heads=raw["n_heads"],
            n_kv_heads=raw.get("n_kv_heads") or raw["n_heads"],
            mlp_hidden=raw.get("mlp_hidden_size") or raw["d_model"] * raw.get("mlp_ratio", 4),
            vocab_size=raw.get("embedding_size") or raw["vocab_size"],
            rope_theta=raw.get("rope_theta", 10000.0), norm_eps=raw.get("rms_norm_eps", 1e-5),
            max_positions=raw.get("max_sequence_length", 4096),
        )
        return cfg, "llada"
    if "hidden_size" in raw:  # LLaDA-V / Llama-style config
        cfg = BackboneConfig(
            d_model=raw["hidden_size"], n_layers=raw["num_hidden_layers"], n_heads=raw["num_attention_heads"],
            n_kv_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
            mlp_hidden=raw["intermediate_size"], vocab_size=raw["vocab_size"],
            rope_theta=raw.get("rope_theta", 10000.0), norm_eps=raw.get("rms_norm_eps", 1e-5),
            max_positions=raw.get("max_position_embeddings", 4096),
        )
        return cfg, "llama"
    raise ValueError(f"{cfg_file} has neither 'd_model' (LLaDA) nor 'hidden_size' (LLaDA-V/Llama); keys: {sorted(raw)[:20]}")


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / s for s in shards]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {path}; convert .bin checkpoints to safetensors first")
    return files


def map_key(key: str, scheme: str) -> str | None:
    """Checkpoint key -> our backbone key, or None for tensors we do not use (vision, ...)."""
    if scheme == "llada":
        return key[len("model.transformer."):] if key.startswith("model.transformer.") else None
    if key == "model.embed_tokens.weight":
        return "wte.weight"
    if key == "model.norm.weight":
        return "ln_f.weight"
    if key == "lm_head.weight":
        return "ff_out.weight"
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)\.weight", key)
    if m and m.group(2) in LLAMA_TO_OURS:
        return f"blocks.{m.group(1)}.{LLAMA_TO_OURS[m.group(2)]}.weight"
    return None


def load_llada_backbone(path: str | Path, extra_vocab: int = 0, dtype: torch.dtype = torch.float32) -> LLaDABackbone:
    """Build a backbone from a local LLaDA / LLaDA-V checkpoint and add `extra_vocab` rows.

    Every backbone parameter must be found in the checkpoint (a missing one raises, so a
    wrong directory never silently leaves random weights). A tied checkpoint (no head
    tensor) copies the embedding into the untied head.
    """
    path = Path(path)
    cfg, scheme = read_backbone_config(path)
    model = LLaDABackbone(cfg).to(dtype)
    state = {}
    for file in _weight_files(path):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                ours = map_key(key, scheme)
                if ours is not None:
                    state[ours] = f.get_tensor(key).to(dtype)
    if "ff_out.weight" not in state and "wte.weight" in state:
        state["ff_out.weight"] = state["wte.weight"].clone()  # weight-tied checkpoint
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    if missing:
        raise KeyError(f"checkpoint {path} ({scheme} naming) lacks {len(missing)} tensors, e.g. {missing[:4]}")
    rows = state["wte.weight"].shape[0]
    if rows != cfg.vocab_size:  # embedding padded beyond config vocab
        model = LLaDABackbone(BackboneConfig(**{**cfg.__dict__, "vocab_size": rows})).to(dtype)
    model.load_state_dict(state, strict=True)
    model.resize_vocab(rows + extra_vocab)
    return model
