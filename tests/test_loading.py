"""Loading LLaDA-8B-style and LLaDA-V-style (Llama names) checkpoints from a local dir."""

import json

import pytest
import torch
from safetensors.torch import save_file

from vla.backbone import BackboneConfig, LLaDABackbone, make_attn_mask, positions_from_valid
from vla.loading import load_llada_backbone

TINY = dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden=96, vocab_size=70, rope_theta=500000.0)


def write_llada8b_checkpoint(path, src: LLaDABackbone, shards=2):
    """Write `src` the way GSAI-ML/LLaDA-8B ships: OLMo-style config, sharded safetensors."""
    c = src.cfg
    config = {"architectures": ["LLaDAModelLM"], "model_type": "llada", "d_model": c.d_model,
              "n_layers": c.n_layers, "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads,
              "mlp_hidden_size": c.mlp_hidden, "mlp_ratio": 4, "vocab_size": c.vocab_size,
              "embedding_size": c.vocab_size, "rope_theta": c.rope_theta, "rms_norm_eps": c.norm_eps,
              "max_sequence_length": 4096, "mask_token_id": c.vocab_size - 1, "weight_tying": False}
    (path / "config.json").write_text(json.dumps(config))
    tensors = {f"model.transformer.{k}": v.detach().clone().contiguous() for k, v in src.state_dict().items()}
    keys = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: tensors[k] for k in keys[i::shards]}
        save_file(part, str(path / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def run(model, x, valid):
    alen = x.shape[1] - valid.shape[1]
    fv = torch.cat([valid, torch.ones(x.shape[0], alen, dtype=torch.bool)], 1)
    return model(x, positions_from_valid(fv), make_attn_mask(valid, alen, "prefix"))[0]


def test_llada8b_format_round_trip_and_action_rows(tmp_path):
    src = LLaDABackbone(BackboneConfig(**TINY)).eval()
    write_llada8b_checkpoint(tmp_path, src)
    loaded = load_llada_backbone(tmp_path, extra_vocab=32).eval()
    assert loaded.wte.weight.shape == (70 + 32, 64) and loaded.ff_out.weight.shape == (102, 64)
    assert torch.equal(loaded.wte.weight[:70], src.wte.weight)
    assert torch.equal(loaded.blocks[1].ff_proj.weight, src.blocks[1].ff_proj.weight)
    x, valid = torch.randn(2, 9, 64), torch.ones(2, 5, dtype=torch.bool)
    assert torch.allclose(run(loaded, x, valid), run(src, x, valid), atol=1e-6)


def test_llada_v_llama_style_checkpoint_written_by_transformers(tmp_path):
    """LLaDA-V uses Llama names; transformers' own writer produces exactly that format."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=70, rope_theta=500000.0, tie_word_embeddings=False,
                      attn_implementation="eager")
    torch.manual_seed(0)
    llama = LlamaForCausalLM(cfg).eval()
    llama.save_pretrained(tmp_path, safe_serialization=True)
    loaded = load_llada_backbone(tmp_path, extra_vocab=32).eval()
    assert loaded.cfg.n_kv_heads == 2 and loaded.wte.weight.shape[0] == 102
    assert torch.equal(loaded.ff_out.weight[:70], llama.lm_head.weight)
    # same hidden states as transformers for the same (full bidirectional) mask
    x = torch.randn(1, 8, 64)
    valid = torch.ones(1, 8, dtype=torch.bool)
    ours = loaded(x, positions_from_valid(valid), make_attn_mask(valid, 0, "full"))[0]
    ref = llama.model(inputs_embeds=x, attention_mask=torch.zeros(1, 1, 8, 8), position_ids=positions_from_valid(valid))
    assert (ours - ref.last_hidden_state).abs().max() <= 1e-4


def test_missing_tensors_and_bad_dirs_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_llada_backbone(tmp_path)
    src = LLaDABackbone(BackboneConfig(**TINY))
    write_llada8b_checkpoint(tmp_path, src, shards=1)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    from safetensors.torch import load_file

    shard = tmp_path / next(iter(set(index["weight_map"].values())))
    tensors = load_file(str(shard))
    tensors.pop("model.transformer.blocks.0.q_proj.weight")
    save_file(tensors, str(shard))
    with pytest.raises(KeyError, match="lacks 1 tensors"):
        load_llada_backbone(tmp_path)


def test_model_builds_on_a_local_checkpoint(tmp_path, tokenizer):
    from vla.model import LLaDAVLA

    from .conftest import small_config

    src = LLaDABackbone(BackboneConfig(**{**TINY, "vocab_size": tokenizer.vocab_size}))
    write_llada8b_checkpoint(tmp_path, src)
    model = LLaDAVLA(small_config(tokenizer, backbone_path=str(tmp_path)))
    assert model.action_tokenizer.offset == tokenizer.vocab_size
    assert torch.equal(model.backbone.wte.weight[: tokenizer.vocab_size], src.wte.weight)
