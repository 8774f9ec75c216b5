"""Backbone math: attention masks, parity with transformers' Llama, exact prefix cache."""

import pytest
import torch

from vla.backbone import BackboneConfig, LLaDABackbone, make_attn_mask, positions_from_valid

CFG = dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden=96, vocab_size=50, rope_theta=500000.0)


def test_mask_matches_docstring_example():
    valid = torch.tensor([[True, True, False]])
    prefix = make_attn_mask(valid, 2, "prefix")[0, 0].int().tolist()
    assert prefix == [[1, 1, 0, 0, 0]] * 3 + [[1, 1, 0, 1, 1]] * 2
    full = make_attn_mask(valid, 2, "full")[0, 0].int().tolist()
    assert full == [[1, 1, 0, 1, 1]] * 5
    causal = make_attn_mask(valid, 2, "causal")[0, 0].int().tolist()
    assert causal == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 0, 1, 0], [1, 1, 0, 1, 1]]
    with pytest.raises(ValueError, match="choose from"):
        make_attn_mask(valid, 2, "sliding")


def llama_from(ours: LLaDABackbone):
    """transformers' LlamaModel holding the same weights (an independent implementation)."""
    from transformers import LlamaConfig, LlamaModel

    c = ours.cfg
    cfg = LlamaConfig(hidden_size=c.d_model, intermediate_size=c.mlp_hidden, num_hidden_layers=c.n_layers,
                      num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, vocab_size=c.vocab_size,
                      rope_theta=c.rope_theta, rms_norm_eps=c.norm_eps, attn_implementation="eager")
    llama = LlamaModel(cfg).eval()
    sd = {"embed_tokens.weight": ours.wte.weight, "norm.weight": ours.ln_f.weight}
    names = {"q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
             "attn_out": "self_attn.o_proj", "ff_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
             "ff_out": "mlp.down_proj", "attn_norm": "input_layernorm", "ff_norm": "post_attention_layernorm"}
    for i, block in enumerate(ours.blocks):
        for ours_name, llama_name in names.items():
            sd[f"layers.{i}.{llama_name}.weight"] = getattr(block, ours_name).weight
    llama.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=True)
    return llama


def random_inputs(bsz=2, plen=7, alen=6, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, plen + alen, d, generator=g)
    valid = torch.ones(bsz, plen, dtype=torch.bool)
    valid[1, 3:5] = False  # padding inside the prefix of row 1
    return x, valid


@pytest.mark.parametrize("mode", ["prefix", "full", "causal"])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_parity_with_transformers_llama(mode, kv_heads):
    torch.manual_seed(0)
    ours = LLaDABackbone(BackboneConfig(**CFG, n_kv_heads=kv_heads)).eval()
    x, valid = random_inputs()
    alen = x.shape[1] - valid.shape[1]
    mask = make_attn_mask(valid, alen, mode)  # (B, 1, T, T) bool
    full_valid = torch.cat([valid, torch.ones(2, alen, dtype=torch.bool)], 1)
    pos = positions_from_valid(full_valid)
    h_ours, _ = ours(x, pos, mask)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    h_ref = llama_from(ours)(inputs_embeds=x, attention_mask=additive, position_ids=pos).last_hidden_state
    keep = full_valid  # outputs at pad positions are unused
    assert (h_ours - h_ref)[keep].abs().max() <= 1e-4


@pytest.mark.parametrize("mode", ["prefix", "causal"])
def test_prefix_cache_is_exact(mode):
    from vla.backbone import KVCache

    ours = LLaDABackbone(BackboneConfig(**CFG)).eval()
    x, valid = random_inputs()
    plen = valid.shape[1]
    alen = x.shape[1] - plen
    full_valid = torch.cat([valid, torch.ones(2, alen, dtype=torch.bool)], 1)
    pos = positions_from_valid(full_valid)
    h_full, _ = ours(x, pos, make_attn_mask(valid, alen, mode))
    h_pre, kvs = ours(x[:, :plen], pos[:, :plen], make_attn_mask(valid, 0, mode), return_kv=True)
    cache = KVCache([k for k, _ in kvs], [v for _, v in kvs], valid, valid.sum(1))
    step_mask = make_attn_mask(valid, alen, mode)[:, :, plen:]
    h_act, _ = ours(x[:, plen:], pos[:, plen:], step_mask, past=cache)
    assert torch.allclose(h_act, h_full[:, plen:], atol=1e-5)
    assert torch.allclose(h_pre[full_valid[:, :plen]], h_full[:, :plen][full_valid[:, :plen]], atol=1e-5)


def test_padding_does_not_change_action_outputs():
    ours = LLaDABackbone(BackboneConfig(**CFG)).eval()
    g = torch.Generator().manual_seed(1)
    prefix, actions = torch.randn(1, 5, 64, generator=g), torch.randn(1, 4, 64, generator=g)
    pad = torch.randn(1, 3, 64, generator=g)
    outs = []
    for x, valid in [
        (torch.cat([prefix, actions], 1), torch.ones(1, 5, dtype=torch.bool)),
        (torch.cat([prefix[:, :3], pad, prefix[:, 3:], actions], 1),
         torch.tensor([[True] * 3 + [False] * 3 + [True] * 2])),
    ]:
        fv = torch.cat([valid, torch.ones(1, 4, dtype=torch.bool)], 1)
        h, _ = ours(x, positions_from_valid(fv), make_attn_mask(valid, 4, "prefix"))
        outs.append(h[:, -4:])
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_resize_vocab_keeps_old_rows():
    ours = LLaDABackbone(BackboneConfig(**CFG))
    old_wte, old_head = ours.wte.weight.clone(), ours.ff_out.weight.clone()
    ours.resize_vocab(60)
    assert ours.wte.weight.shape == (60, 64) and ours.ff_out.weight.shape == (60, 64)
    assert torch.equal(ours.wte.weight[:50], old_wte) and torch.equal(ours.ff_out.weight[:50], old_head)
    with pytest.raises(ValueError, match="shrink"):
        ours.resize_vocab(10)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        BackboneConfig(d_model=65, n_heads=4)
