"""The LeRobot plugin `llada_vla`: config validation, processors, save/load, AR baseline, LoRA."""

import json

import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.policies.factory import make_policy, make_pre_post_processors

from vla.policies import LLaDAVLAConfig

from .lerobot_data import write_reach_dataset
from .test_recipe import _policy

SMALL = dict(device="cpu", push_to_hub=False, image_size=32, vision_kwargs={"depth": 1}, d_model=64,
             n_layers=2, n_heads=4, mlp_hidden=128, use_bf16=False)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "reach"
    write_reach_dataset(root, episodes=4, frames=8)
    return root


def build(root, **overrides):
    meta = LeRobotDatasetMetadata("local/reach", root=root)
    cfg = LLaDAVLAConfig(**{**SMALL, **overrides})
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    ds = LeRobotDataset("local/reach", root=root, delta_timestamps={"action": [i / 10 for i in range(cfg.chunk_size)]})
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)))
    return policy, pre, post, batch


def test_config_errors_say_how_to_fix():
    with pytest.raises(ValueError, match="n_action_steps=6 must be in"):
        LLaDAVLAConfig(chunk_size=5, n_action_steps=6, device="cpu")
    with pytest.raises(ValueError, match="choose from"):
        LLaDAVLAConfig(decoder="beam", device="cpu")
    with pytest.raises(ValueError, match="decode_steps=null"):
        LLaDAVLAConfig(attention="causal", device="cpu")
    cfg = LLaDAVLAConfig(device="cpu")
    cfg.input_features = {"observation.state": PolicyFeature(FeatureType.STATE, (2,))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (2,))}
    with pytest.raises(ValueError, match="at least one image feature"):
        cfg.validate_features()


def test_forward_uses_processed_batch_and_reports_accuracy(dataset_root):
    policy, pre, _, batch = build(dataset_root)
    processed = pre(batch)
    assert processed["observation.language.tokens"].shape[0] == 4
    assert processed["action"].abs().max() <= 1.2  # QUANTILES with exact q01/q99 -> ~[-1, 1]
    loss, metrics = policy.forward(processed)
    assert torch.isfinite(loss) and 0.0 <= metrics["masked_acc"] <= 1.0
    loss.backward()


def test_tokenizer_and_paraphrases_come_from_the_dataset(dataset_root):
    policy, pre, _, batch = build(dataset_root)
    cfg = policy.config
    assert cfg.paraphrases and cfg.tokenizer_json
    task = batch["task"][0]
    assert task in cfg.paraphrases
    unk = policy.tokenizer.backend.token_to_id("[UNK]")
    for text in [task, *cfg.paraphrases[task]]:
        assert unk not in policy.tokenizer.encode_one(text)  # every paraphrase word is known
    processed = pre(batch)
    cfg.paraphrase_prob = 1.0
    policy.train()
    aug = policy._observation(processed, augment=True).text_ids
    policy.eval()
    plain = policy._observation(processed).text_ids
    assert aug.shape != plain.shape or not torch.equal(aug, plain)


def test_save_load_round_trip_gives_identical_actions(dataset_root, tmp_path):
    policy, pre, post, batch = build(dataset_root)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    for _ in range(2):
        loss, _ = policy.forward(pre(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    expected = post(policy.predict_action_chunk(pre(batch)))
    policy.save_pretrained(tmp_path)
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json", "policy_preprocessor.json"} <= {
        p.name for p in tmp_path.iterdir()}
    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    loaded = LLaDAVLAPolicy.from_pretrained(tmp_path)
    cfg = loaded.config
    pre2, post2 = make_pre_post_processors(cfg, pretrained_path=str(tmp_path))
    got = post2(loaded.predict_action_chunk(pre2(batch)))
    assert torch.equal(got, expected)
    assert json.loads((tmp_path / "config.json").read_text())["type"] == "llada_vla"


def test_select_action_serves_the_chunk_from_a_queue(dataset_root):
    policy, pre, _, batch = build(dataset_root, chunk_size=5, n_action_steps=3)
    policy.eval()
    processed = pre(batch)
    chunk = policy.predict_action_chunk(processed)
    served = [policy.select_action(processed) for _ in range(3)]
    assert torch.equal(torch.stack(served, 1), chunk[:, :3])
    policy.reset()
    assert len(policy._queue) == 0


def test_autoregressive_baseline_is_a_config_value(dataset_root):
    policy, pre, _, batch = build(dataset_root, attention="causal", decoder="ar", decode_steps=None)
    loss, _ = policy.forward(pre(batch))
    assert torch.isfinite(loss)
    policy.eval()
    assert policy.predict_action_chunk(pre(batch)).shape == (4, 5, 2)


@pytest.mark.parametrize("fmt", ["llada", "llama"])
def test_lora_trains_adapters_and_action_rows_only(dataset_root, tmp_path, fmt):
    from vla.backbone import BackboneConfig, LLaDABackbone

    from .test_loading import write_llada8b_checkpoint

    policy0, _, _, _ = build(dataset_root)
    text_vocab = policy0.tokenizer.vocab_size
    if fmt == "llada":
        write_llada8b_checkpoint(tmp_path, LLaDABackbone(BackboneConfig(d_model=64, n_layers=2, n_heads=4,
                                                                        mlp_hidden=96, vocab_size=text_vocab)))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                     vocab_size=text_vocab)).save_pretrained(tmp_path)
    policy, pre, _, batch = build(dataset_root, backbone_path=str(tmp_path), lora_rank=4,
                                  tokenizer_json=policy0.config.tokenizer_json)
    bb = policy.model.backbone
    names = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or n in ("wte.weight", "ff_out.weight") for n in names)
    before = {n: p.detach().clone() for n, p in bb.named_parameters()}
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=1e-2, weight_decay=0.1)
    loss, _ = policy.forward(pre(batch))
    loss.backward()
    opt.step()
    after = dict(bb.named_parameters())
    assert torch.equal(after["blocks.0.q_proj.base_layer.weight"], before["blocks.0.q_proj.base_layer.weight"])
    assert not torch.equal(after["blocks.0.q_proj.lora_B.default.weight"], before["blocks.0.q_proj.lora_B.default.weight"])
    offset = policy.model.action_tokenizer.offset
    assert torch.equal(after["wte.weight"][:offset], before["wte.weight"][:offset])  # text rows frozen
    assert not torch.equal(after["ff_out.weight"][offset:], before["ff_out.weight"][offset:])  # action rows learn


def test_paper_preset_builds_on_meta_device():
    """configs/llada8b_paper.json: SigLIP so400m + LLaDA-8B, shapes only (no memory)."""
    from pathlib import Path

    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    preset = json.loads((Path(__file__).parents[1] / "configs" / "llada8b_paper.json").read_text())["policy"]
    preset = {k: v for k, v in preset.items() if k != "type"}
    cfg = LLaDAVLAConfig(**{**preset, "device": "cpu", "tokenizer_json": None})
    cfg.input_features = {"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 384, 384))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (7,))}
    from vla.text_tokenizer import TextTokenizer

    cfg.tokenizer_json = TextTokenizer.train(["pick up the cube"], vocab_size=64).to_json()
    with torch.device("meta"):
        policy = LLaDAVLAPolicy(cfg)
    n = sum(p.numel() for p in policy.parameters())
    print(f"llada8b_paper parameters: {n / 1e9:.2f}B")
    assert 8.2e9 < n < 8.6e9


def test_gradient_checkpointing_gives_the_same_gradients(dataset_root):
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        policy, pre, _, batch = build(dataset_root, gradient_checkpointing=ckpt)
        assert policy.model.backbone.gradient_checkpointing is ckpt
        loss, _ = policy.forward(pre(batch))
        loss.backward()
        grads.append(policy.model.backbone.blocks[0].q_proj.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_set_decoder_sets_the_threshold_and_keeps_the_other_fields():
    """The decoder ablation's threshold sweep: each row really runs at its own threshold."""
    from vla.bench.results import DECODER_ABLATION
    from vla.policies.modeling_llada_vla import LLaDAVLAPolicy

    policy = _policy(decoder="had", decode_steps=10, temperature=0.5)
    assert isinstance(policy, LLaDAVLAPolicy)
    policy.set_decoder("threshold", 10, 0.5)
    dec = policy.model.cfg.decoder
    assert (dec.name, dec.steps, dec.threshold, dec.temperature) == ("threshold", 10, 0.5, 0.5)
    assert (policy.config.decoder, policy.config.threshold) == ("threshold", 0.5)
    assert policy.decoding() == {"decoder": "threshold", "decode_steps": 10, "action_slots": 12, "threshold": 0.5}
    policy.set_decoder("had", 5)  # no threshold given: the current one stays
    assert (policy.model.cfg.decoder.name, policy.model.cfg.decoder.steps, policy.model.cfg.decoder.threshold) == \
        ("had", 5, 0.5)
    thresholds = [t for _, name, _, t in DECODER_ABLATION if name == "threshold"]
    assert len(set(thresholds)) == len(thresholds) >= 2  # a sweep, each a distinct setting
