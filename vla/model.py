r"""LLaDAVLA: vision encoder + projector + LLaDA backbone + LSC head + decoders.

The model contract is two methods (as openpi's):
- `compute_loss(obs, actions)` -> (loss, metrics): masked-diffusion loss on the action
  block (or next-token loss in `causal` mode);
- `sample_actions(obs)` -> (actions (B, H, D) in raw units, DecodeResult).

Token sequence (DESIGN.md section 2):

    [image tokens][state token?][instruction tokens + pads][SEP][H*D action slots]
    \---------------------------- prefix (P) ---------------------/\--- block (L) ---/

Pads sit inside the prefix and are masked out of attention; RoPE positions skip them,
so the result does not depend on how much padding a batch carries.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn

from vla.action_tokenizer import ActionTokenizer
from vla.backbone import (
    ATTENTION_MODES,
    BackboneConfig,
    KVCache,
    LLaDABackbone,
    make_attn_mask,
    none_if_full,
    positions_from_valid,
)
from vla.decoders import MASK, DecodeConfig, DecodeResult, decode
from vla.kernels.lsc_epilogue import LSCHidden
from vla.loading import load_llada_backbone
from vla.lsc import LOSS_WEIGHTINGS, causal_action_loss, lsc_logits, masked_diffusion_loss, sample_mask
from vla.vision import VisionConfig, VisionTower, random_shift

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"  # named presets (a source checkout's configs/)
# The model's flat field names: LeRobot's `--policy.<name>` flags and the "policy" block of every
# configs/*.json. A VLAConfig field keeps its name, and so do the fields of the backbone and
# decoding parts (`d_model`, `temperature`, ...); the vision fields and a few others are renamed:
FLAT_ALIASES = {
    "vision_encoder": ("vision", "encoder"), "image_size": ("vision", "image_size"), "cameras": ("vision", "cameras"),
    "vision_kwargs": ("vision", "encoder_kwargs"), "vision_weights_path": ("vision", "weights_path"),
    "freeze_vision": ("vision", "freeze"), "vision_film": ("vision", "film"), "vision_keypoints": ("vision", "keypoints"),
    "vision_lang_keypoints": ("vision", "lang_keypoints"), "vision_token_grid": ("vision", "token_grid"),
    "decoder": ("decoder", "name"), "decode_steps": ("decoder", "steps"),
    "constant_action_dims": (None, "constant_dims"), "constant_action_values": (None, "constant_values"),
}


def flat_names() -> dict[str, tuple[str | None, str]]:
    """Every flat model field name -> (part or None for VLAConfig itself, field name there)."""
    own = {f.name: (None, f.name) for f in fields(VLAConfig) if f.name not in ("vision", "backbone", "decoder")}
    parts = {f.name: (part, f.name) for part, cls in (("backbone", BackboneConfig), ("decoder", DecodeConfig))
             for f in fields(cls) if f.name not in ("name", "steps")}  # the decoder's two are aliased
    return {**own, **parts, **FLAT_ALIASES}


def preset_fields(name: str) -> dict:
    """The model fields of the named preset configs/<name>.json (its "policy" block, flat names)."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.json"))
        raise ValueError(f"unknown preset {name!r}; choose from {known} (files in {PRESETS_DIR})")
    names = flat_names()
    return {k: v for k, v in json.loads(path.read_text())["policy"].items() if k in names}


@dataclass
class VLAConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # vocab_size excludes the K action rows
    decoder: DecodeConfig = field(default_factory=DecodeConfig)
    chunk_size: int = 5  # H: future actions per chunk (paper: 5)
    action_dim: int = 7  # D: action dimensions (paper: 7)
    num_bins: int = 32  # K: action tokens shared by all dims (paper: 32; OpenVLA: 256)
    state_dim: int = 0  # proprioceptive state size; 0 = no state token (the paper uses none)
    attention: str = "prefix"  # prefix | full | causal (see vla.backbone.make_attn_mask)
    loss_weighting: str = "mean"  # mean (paper notes: 1/|M|) | inv_t (LLaDA's 1/t ELBO weight)
    mask_eps: float = 1e-3  # lower bound of the masking ratio t
    full_mask_prob: float = 0.0  # share of training samples with every action slot masked (see lsc.sample_mask)
    num_maskings: int = 1  # training: independent maskings of each sample's action block, scored against one
    #                        prefix encoding (exact under prefix attention; the prefix is ~3/4 of the FLOPs)
    random_shift: int = 0  # training: pad images by this many pixels and crop back at a random offset (DrQ)
    constant_dims: tuple[int, ...] = ()  # action dims that are constant in the data: no slots, filled with ...
    constant_values: tuple[float, ...] = ()  # ... these values (in the units the model is trained on)
    slot_embeddings: bool = False  # a learned embedding per action slot (which step, which dim), added to its token
    label_sigma: float = 0.0  # soft targets: a Gaussian over neighbouring bins with this std (bins); 0 = one-hot
    fusion_token: bool = False  # one prefix token from an MLP over [keypoint layout, instruction, state] (needs keypoints)
    fusion_slots: bool = False  # each action slot's input also gets its own linear projection of the fused token
    max_text_len: int = 32  # instruction tokens kept (longer ones are truncated)
    backbone_path: str | None = None  # local LLaDA / LLaDA-V checkpoint dir; overrides `backbone`
    pad_token_id: int = 0  # special ids: set from the text tokenizer, never by hand
    sep_token_id: int = 2
    mask_token_id: int = 3

    def __post_init__(self):
        for name, cls in (("vision", VisionConfig), ("backbone", BackboneConfig), ("decoder", DecodeConfig)):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, cls(**getattr(self, name)))
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention='{self.attention}'; choose from {ATTENTION_MODES}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting='{self.loss_weighting}'; choose from {LOSS_WEIGHTINGS}")
        if self.attention == "causal" and (self.decoder.name != "ar" or self.decoder.steps not in (None, self.action_len)):
            raise ValueError(
                "attention='causal' is the autoregressive baseline: it predicts each slot from the one before "
                "it, so set decoder='ar' and decode_steps=null (one slot per forward)"
            )
        for name in ("chunk_size", "action_dim", "num_maskings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.num_bins < 2:
            raise ValueError(f"num_bins={self.num_bins} must be >= 2 (the paper uses 32, OpenVLA 256)")
        if not 0.0 <= self.full_mask_prob <= 1.0:
            raise ValueError(f"full_mask_prob={self.full_mask_prob} must lie in [0, 1]")
        if self.attention == "causal" and self.num_maskings != 1:
            raise ValueError("num_maskings > 1 needs a masked block; the causal AR baseline scores every slot once")
        if self.fusion_token and self.vision.keypoints + self.vision.lang_keypoints <= 0:
            raise ValueError("fusion_token reads the keypoint layout: set vision keypoints > 0 (or fusion_token=false)")
        if self.fusion_slots and not self.fusion_token:
            raise ValueError("fusion_slots projects the fused token: set fusion_token=true (or fusion_slots=false)")
        if self.random_shift < 0 or self.label_sigma < 0:
            raise ValueError(f"random_shift={self.random_shift} (pixels) and label_sigma={self.label_sigma} (bins) "
                             "must be >= 0 (0 = off)")
        self.constant_dims, self.constant_values = tuple(self.constant_dims), tuple(self.constant_values)
        if len(self.constant_dims) != len(self.constant_values) or len(set(self.constant_dims)) != len(self.constant_dims):
            raise ValueError(f"constant_dims {self.constant_dims} need one value each, got {self.constant_values}")
        if not all(0 <= d < self.action_dim for d in self.constant_dims) or not self.token_dims:
            raise ValueError(f"constant_dims {self.constant_dims} must be distinct dims of action_dim="
                             f"{self.action_dim}, leaving at least one dim to predict")
        ids = (self.pad_token_id, self.sep_token_id, self.mask_token_id)
        if max(ids) >= self.backbone.vocab_size:
            raise ValueError(f"special token ids {ids} do not fit the text vocab of {self.backbone.vocab_size}")

    @property
    def token_dims(self) -> tuple[int, ...]:
        """Action dims that get slots (all but `constant_dims`), in order."""
        return tuple(d for d in range(self.action_dim) if d not in self.constant_dims)

    @property
    def slots_per_action(self) -> int:
        return len(self.token_dims)

    @property
    def action_len(self) -> int:
        return self.chunk_size * self.slots_per_action

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VLAConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown VLAConfig fields {unknown}; valid: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_flat(cls, flat: dict, **more) -> VLAConfig:
        """The config from flat field names (`flat_names`: a preset's "policy" block, the LeRobot
        config's model fields), `more` (flat too) taking precedence. None for `vocab_size` or the
        constant action dims means "not given" (the default). Validated once, here."""
        names, nested = flat_names(), {"vision": {}, "backbone": {}, "decoder": {}}
        unknown = sorted(set(flat) - set(names)) + sorted(set(more) - set(names))
        if unknown:
            raise ValueError(f"unknown model fields {unknown}; valid: {sorted(names)}")
        for key, value in {**flat, **more}.items():
            part, name = names[key]
            if value is None and key in ("vocab_size", "constant_action_dims", "constant_action_values"):
                continue
            (nested if part is None else nested[part])[name] = copy.deepcopy(value)
        return cls(**nested)


@dataclass
class Observation:
    images: dict[str, torch.Tensor]  # {camera: (B, 3, H, W) float in [0, 1]}
    text_ids: torch.Tensor  # (B, T) long instruction tokens, right-padded
    text_mask: torch.Tensor  # (B, T) bool, True for real tokens
    state: torch.Tensor | None = None  # (B, S) normalized proprioceptive state

    @property
    def batch_size(self) -> int:
        return self.text_ids.shape[0]


STATE_CLIP = 10.0  # normalized state is clamped to +-this: ~10 std / 5x the q01..q99 range, far outside any data


def finite_inputs(obs: Observation) -> Observation:
    """-> `obs` with images in [0, 1] and the normalized state in [-STATE_CLIP, STATE_CLIP], NaN read as 0.

    Valid inputs pass unchanged (images from uint8 lie in [0, 1]; normalized data states lie
    well inside the clip). Out-of-range ones (a sensor glitch, a state far outside the
    dataset statistics) become the nearest in-range value instead of inf / NaN activations.
    """
    images = {k: torch.nan_to_num(v, nan=0.0).clamp(0.0, 1.0) for k, v in obs.images.items()}
    state = obs.state
    if state is not None:
        state = torch.nan_to_num(state.float(), nan=0.0).clamp(-STATE_CLIP, STATE_CLIP)
    return replace(obs, images=images, state=state)


class LLaDAVLA(nn.Module):
    def __init__(self, cfg: VLAConfig, action_low: torch.Tensor | None = None, action_high: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.compile_mode: str | None = None  # set by compile_for_inference
        d = cfg.backbone.d_model
        text_vocab = cfg.backbone.vocab_size
        bb_cfg = BackboneConfig(**{**asdict(cfg.backbone), "vocab_size": text_vocab + cfg.num_bins})
        if cfg.backbone_path is not None:
            self.backbone = load_llada_backbone(cfg.backbone_path, extra_vocab=cfg.num_bins)
            text_vocab = self.backbone.cfg.vocab_size - cfg.num_bins
            cfg.backbone = BackboneConfig(**{**asdict(self.backbone.cfg), "vocab_size": text_vocab})
            d = cfg.backbone.d_model
        else:
            self.backbone = LLaDABackbone(bb_cfg)
        self.vision = VisionTower(cfg.vision, d)
        # RoPE moves only queries and keys, so a [MASK] slot's own state says nothing of which
        # action step and dim it stands for; from scratch that is slow to infer from attention
        # patterns alone (a pretrained LLaDA has learned it), so each slot can carry its own.
        self.slot_embed = nn.Parameter(torch.randn(cfg.action_len, d) * 0.02) if cfg.slot_embeddings else None
        # Where the keypoints are, what was asked and where the gripper is, fused by an MLP into
        # one token: the combination the action depends on sits in one place from the first step,
        # instead of being gathered by attention over the whole prefix (which learns slowly).
        self.fusion = None
        if cfg.fusion_token:
            n_in = d * (len(cfg.vision.cameras) * (cfg.vision.keypoints + cfg.vision.lang_keypoints + 1)
                    + 1 + (cfg.state_dim > 0))
            self.fusion = nn.Sequential(nn.Linear(n_in, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        # Slots share one read-out (the K action rows of the LM head), so slot j must carry
        # *its* action dim and step, a different projection of the fused token for each slot.
        # Measured (docs/model.md, issue 14): a linear read-out of the fused token, identical for every
        # slot but for a small slot embedding, learns grounding at half the rate of one
        # projection per slot; through the backbone without it, not at all in CPU minutes.
        self.slot_condition = nn.Linear(d, cfg.action_len * d) if cfg.fusion_slots else None
        self.state_proj = nn.Linear(cfg.state_dim, d) if cfg.state_dim > 0 else None
        low = action_low if action_low is not None else -torch.ones(cfg.action_dim)
        high = action_high if action_high is not None else torch.ones(cfg.action_dim)
        if low.numel() != cfg.action_dim or high.numel() != cfg.action_dim:
            raise ValueError(f"action stats have {low.numel()} dims; config says action_dim={cfg.action_dim}")
        dims = list(cfg.token_dims)
        self.action_tokenizer = ActionTokenizer(low[dims], high[dims], cfg.num_bins, offset=text_vocab)

    # -- sequence construction -------------------------------------------------------------
    def embed_prefix(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor]:
        """-> prefix embeddings (B, P, d) and validity (B, P) bool; the SEP is the last token.

        Inputs are made finite first (`finite_inputs`), so any observation yields finite
        embeddings and hence finite logits: a state of +-3.4e38 (finite float32, valid on
        the wire) would otherwise overflow the state projection into inf and NaN.
        """
        obs = finite_inputs(obs)
        bsz, cfg = obs.batch_size, self.cfg
        if obs.text_ids.shape != obs.text_mask.shape:
            raise ValueError(f"text_ids {tuple(obs.text_ids.shape)} and text_mask {tuple(obs.text_mask.shape)} differ")
        text_ids, text_mask = obs.text_ids[:, : cfg.max_text_len], obs.text_mask[:, : cfg.max_text_len].bool()
        wte = self.backbone.wte
        text = wte(text_ids)  # (B, T, d)
        instruction = None
        if self.vision.film is not None or self.fusion is not None or cfg.vision.lang_keypoints:
            m = text_mask[..., None].to(text.dtype)
            instruction = (text * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, d) mean token embedding
        img = self.vision(obs.images, instruction)  # (B, N_img, d); FiLM reads the instruction
        parts, valid = [img.to(wte.weight.dtype)], [torch.ones(bsz, img.shape[1], dtype=torch.bool, device=img.device)]
        state = None
        if self.state_proj is not None:
            if obs.state is None or obs.state.shape != (bsz, cfg.state_dim):
                got = None if obs.state is None else tuple(obs.state.shape)
                raise ValueError(f"state has shape {got}; expected ({bsz}, {cfg.state_dim})")
            state = self.state_proj(obs.state.to(wte.weight.dtype))
            parts.append(state[:, None])
            valid.append(valid[0][:, :1])
        if self.fusion is not None:
            n_kp = cfg.vision.keypoints + cfg.vision.lang_keypoints + 1  # each camera's keypoint tokens and its layout token
            keypoints = img.view(bsz, len(cfg.vision.cameras), -1, img.shape[-1])[:, :, -n_kp:]
            inputs = [keypoints.flatten(1), nn.functional.layer_norm(instruction, instruction.shape[-1:])]
            parts.append(self.fusion(torch.cat(inputs + ([state] if state is not None else []), -1).to(
                wte.weight.dtype))[:, None])
            valid.append(valid[0][:, :1])
        sep = torch.full((bsz, 1), cfg.sep_token_id, dtype=torch.long, device=text_ids.device)
        parts.append(torch.cat([text, wte(sep)], 1))
        valid.append(torch.cat([text_mask, torch.ones_like(sep, dtype=torch.bool)], 1))
        return torch.cat(parts, 1), torch.cat(valid, 1)

    def slot_conditions(self, prefix: torch.Tensor) -> torch.Tensor | None:
        """Prefix (B, P, d) -> each action slot's projection of the fused token (B, L, d), or None (off)."""
        if self.slot_condition is None:
            return None
        fused = prefix[:, self.vision.num_tokens + int(self.state_proj is not None)]  # after image and state tokens
        return self.slot_condition(fused).view(prefix.shape[0], self.cfg.action_len, -1)

    def embed_actions(self, bins: torch.Tensor, start: int = 0, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) bins with MASK (-1) of slots start..start+T -> (B, T, d) embeddings of action / [MASK] tokens.

        cond: `slot_conditions` of the observation (B, L, d), added slot by slot (None: off)."""
        ids = torch.where(bins == MASK, self.cfg.mask_token_id, bins + self.action_tokenizer.offset)
        x = self.backbone.wte(ids)
        if self.slot_embed is not None:
            x = x + self.slot_embed[start : start + bins.shape[1]].to(x.dtype)
        if cond is not None:
            x = x + cond[:, start : start + bins.shape[1]].to(x.dtype)
        return x

    def _head_input(self, h_actions: torch.Tensor, h_sep: torch.Tensor) -> torch.Tensor:
        """Hidden (B, L, d) read out at each slot. Causal mode: slot j is read from the position before it."""
        if self.cfg.attention == "causal":
            h_actions = torch.cat([h_sep[:, None], h_actions[:, :-1]], 1)
        return h_actions

    def _readout(self, head_in: torch.Tensor, fused: bool) -> torch.Tensor | LSCHidden:
        """Predictor output for head input (B, L, d): LSC logits, or `LSCHidden` for the fused epilogue."""
        if not fused:
            return lsc_logits(head_in, self.backbone.ff_out.weight, self.action_tokenizer.offset, self.cfg.num_bins)
        offset = self.action_tokenizer.offset
        return LSCHidden(head_in, self.backbone.ff_out.weight[offset : offset + self.cfg.num_bins])

    def _full_head_input(self, prefix: torch.Tensor, valid: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """One pass over [prefix][action block] -> head input (B, L, d) at the action slots."""
        plen, alen = prefix.shape[1], bins.shape[1]
        x = torch.cat([prefix, self.embed_actions(bins, cond=self.slot_conditions(prefix))], 1)
        full_valid = torch.cat([valid, torch.ones_like(bins, dtype=torch.bool)], 1)
        mask = make_attn_mask(valid, alen, self.cfg.attention)
        hidden, _ = self.backbone(x, positions_from_valid(full_valid), mask)
        return self._head_input(hidden[:, plen:], hidden[:, plen - 1])

    def forward_full(self, prefix: torch.Tensor, valid: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """One pass over [prefix][action block] -> LSC logits (B, L, K)."""
        return self._readout(self._full_head_input(prefix, valid, bins), fused=False)

    # -- contract ------------------------------------------------------------------------
    def compute_loss(self, obs: Observation, actions: torch.Tensor, generator: torch.Generator | None = None,
                     action_valid: torch.Tensor | None = None, sample_seeds: torch.Tensor | None = None):
        """actions (B, H, D) raw -> (loss, metrics). Only action slots are masked or scored.

        `action_valid` (B, H) bool marks real actions; padded ones (past an episode's end)
        are always masked and never scored. `sample_seeds` (B,) make each sample's masks
        and image shift a function of its seed alone (see `vla.lsc.sample_mask`). With
        `num_maskings` M > 1 each sample's block is masked M times and the loss is the mean
        of the M single-masking losses; under prefix attention the prefix is encoded once
        and its keys/values serve all M blocks (exact: the prefix never sees the block).
        """
        cfg = self.cfg
        if actions.shape[1:] != (cfg.chunk_size, cfg.action_dim):
            raise ValueError(f"actions have shape {tuple(actions.shape)}; expected (B, {cfg.chunk_size}, {cfg.action_dim})")
        targets = self.action_tokenizer.to_bins(actions[..., list(cfg.token_dims)]).flatten(1)  # (B, L)
        slot_valid = None if action_valid is None else action_valid.bool().repeat_interleave(cfg.slots_per_action, 1)
        if cfg.random_shift > 0 and self.training:
            images = {k: random_shift(v, cfg.random_shift, sample_seeds, generator) for k, v in obs.images.items()}
            obs = replace(obs, images=images)
        prefix, valid = self.embed_prefix(obs)
        if cfg.attention == "causal":
            return causal_action_loss(self.forward_full(prefix, valid, targets), targets, slot_valid, cfg.label_sigma)
        bsz, n = targets.shape[0], cfg.num_maskings
        seeds = None if sample_seeds is None else torch.cat([sample_seeds + m * 1_000_000_007 for m in range(n)])
        p_mask, mask = sample_mask(n * bsz, targets.shape[1], cfg.mask_eps, generator, targets.device, seeds,
                                   cfg.full_mask_prob)  # (M*B,), (M*B, L): masking-major
        targets_m = targets.repeat(n, 1)
        valid_m = None if slot_valid is None else slot_valid.repeat(n, 1)
        hidden = mask if valid_m is None else mask | ~valid_m
        bins = torch.where(hidden, MASK, targets_m)
        if n == 1:
            logits = self.forward_full(prefix, valid, bins)
        elif cfg.attention == "prefix":
            cache, h_sep = self.encode_prefix(prefix, valid)
            cond = self.slot_conditions(prefix)
            logits = self._readout(self._cached_head_input(cache.repeat(n), h_sep.repeat(n, 1), bins, cond=(
                None if cond is None else cond.repeat(n, 1, 1))), fused=False)
        else:  # full attention: the prefix sees the block, so each masking needs its own pass
            logits = self.forward_full(prefix.repeat(n, 1, 1), valid.repeat(n, 1), bins)
        scored = mask if valid_m is None else mask & valid_m
        losses = [masked_diffusion_loss(logits[i], targets_m[i], scored[i], p_mask[i], cfg.loss_weighting,
                                        cfg.label_sigma)
                  for i in torch.arange(n * bsz, device=targets.device).view(n, bsz)]
        loss = torch.stack([loss for loss, _ in losses]).mean()
        metrics = {k: torch.stack([m[k] for _, m in losses]).mean() for k in losses[0][1]}
        return loss, metrics

    def _block_layout(self, valid: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Mask (B, 1, L, P+L) or None (all allowed) and RoPE positions (B, L) of the action
        block run against a cached prefix with validity `valid` (B, P)."""
        plen, alen = valid.shape[1], self.cfg.action_len
        mask = none_if_full(make_attn_mask(valid, alen, self.cfg.attention)[:, :, plen:])
        positions = valid.long().sum(1, keepdim=True) + torch.arange(alen, device=valid.device)
        return mask, positions

    def _cached_head_input(self, cache: KVCache, h_sep: torch.Tensor, bins: torch.Tensor,
                           layout: tuple[torch.Tensor | None, torch.Tensor] | None = None,
                           cond: torch.Tensor | None = None) -> torch.Tensor:
        """Head input (B, L, d) of the action block `bins` run against a cached prefix."""
        mask, positions = layout or self._block_layout(cache.valid)
        hidden, _ = self.backbone(self.embed_actions(bins, cond=cond), positions, mask, past=cache)
        return self._head_input(hidden, h_sep)

    def encode_prefix(self, prefix: torch.Tensor, valid: torch.Tensor) -> tuple[KVCache, torch.Tensor]:
        """Run the prefix once -> (its keys/values, hidden of SEP (B, d)). Exact in prefix/causal mode."""
        mask = none_if_full(make_attn_mask(valid, 0, self.cfg.attention))
        hidden, kvs = self.backbone(prefix, positions_from_valid(valid), mask, return_kv=True)
        cache = KVCache([k for k, _ in kvs], [v for _, v in kvs], valid, valid.long().sum(1))
        return cache, hidden[:, -1]

    def make_predictor(self, obs: Observation, use_cache: bool = True, decoder: DecodeConfig | None = None,
                       fused_lsc: bool | None = None):
        """The decoders' mask predictor for this observation: bins (B, L) -> logits (B, L, K).

        use_cache: run the prefix once and each step only the action slots against its
        keys/values (exact in `prefix` and `causal` modes; `full` mode always recomputes).
        In `causal` mode with the one-slot-per-step `ar` decoder (`decoder`, default the
        config's) the cache also grows by each committed slot, so a step runs one token.
        fused_lsc: return `LSCHidden` so the decoder uses the fused LSC epilogue
        (`vla.kernels.lsc_epilogue`); None = on for CUDA, off on CPU (where the logits
        path is as fast and the epilogue would run its torch reference anyway).
        """
        prefix, valid = self.embed_prefix(obs)
        fused = prefix.is_cuda if fused_lsc is None else fused_lsc
        alen = self.cfg.action_len
        if not use_cache or self.cfg.attention == "full":  # full mode: the prefix sees the actions
            def uncached(bins: torch.Tensor):
                return self._readout(self._full_head_input(prefix, valid, bins), fused)

            return uncached
        dec = decoder or self.cfg.decoder
        if self.cfg.attention == "causal" and dec.name == "ar" and dec.steps in (None, alen) and dec.remask is None:
            return self._incremental_ar_predictor(prefix, valid, fused)
        cache, h_sep = self.encode_prefix(prefix, valid)
        layout = self._block_layout(valid)  # the same for every step
        cond = self.slot_conditions(prefix)

        def predictor(bins: torch.Tensor):
            return self._readout(self._cached_head_input(cache, h_sep, bins, layout, cond), fused)

        return predictor

    def _incremental_ar_predictor(self, prefix: torch.Tensor, valid: torch.Tensor, fused: bool):
        """Causal-mode predictor with a KV cache of the prefix and the committed slots.

        Each call runs only the slots committed since the previous call and reads slot j
        from the hidden state of slot j-1 (SEP for slot 0), exactly as the full causal pass
        does. The cache is preallocated for all P+L positions and every call attends over
        all of it, with the slots not yet written masked out, so a one-slot step has the
        same shapes at every position: a compiled backbone runs one graph for the whole
        chunk, with no per-position recompiles (the static-cache design of gpt-fast).
        Rows after the first masked slot are not computed (zeros -> uniform logits): only
        the left-to-right `ar` rule with one slot per step may use this predictor, which
        `make_predictor` guarantees.
        """
        cache, h_sep = self.encode_prefix(prefix, valid)
        cond = self.slot_conditions(prefix)
        bsz, plen = valid.shape
        alen = self.cfg.action_len
        keys = [torch.cat([k, k.new_zeros(*k.shape[:2], alen, k.shape[3])], 2) for k in cache.keys]  # (B, nkv, P+L, hd)
        values = [torch.cat([v, v.new_zeros(*v.shape[:2], alen, v.shape[3])], 2) for v in cache.values]
        past = KVCache(keys, values, valid, cache.next_position)  # the buffers themselves: written in place below
        head_in = h_sep.new_zeros(bsz, alen, h_sep.shape[-1])  # (B, L, d): row j = hidden of slot j-1
        head_in[:, 0] = h_sep
        prefix_ok = valid[:, None, None, :]  # (B, 1, 1, P)
        slot = torch.arange(alen, device=valid.device)
        done = [0]  # slots whose keys/values are cached

        def predictor(bins: torch.Tensor):
            is_set = bins != MASK
            committed = is_set.long().cumprod(1).sum(1)  # (B,) length of the left-aligned committed run
            run, top, holes = torch.stack([committed.min(), committed.max(), (is_set.sum(1) != committed).sum()]).tolist()
            if top != run or holes or run < done[0]:
                raise RuntimeError("incremental AR cache needs one left-to-right commit per step (decoder 'ar')")
            start = done[0]
            if run > start:
                new, t = slice(start, run), run - start
                # query slot i (of the t new ones) sees the valid prefix, the cached slots (< start) and
                # the new slots <= i; the buffer's unwritten slots are masked: (B, 1, t, P+L+t)
                mask = torch.cat([prefix_ok.expand(bsz, 1, t, plen),
                                  (slot < start).expand(bsz, 1, t, alen),
                                  (slot[:t, None] >= slot[None, :t]).expand(bsz, 1, t, t)], -1)
                positions = cache.next_position[:, None] + slot[new]
                hidden, kvs = self.backbone(self.embed_actions(bins[:, new], start, cond), positions, mask, past=past,
                                            return_kv=True)
                for (k_new, v_new), k, v in zip(kvs, keys, values, strict=True):
                    k[:, :, plen + start : plen + run] = k_new
                    v[:, :, plen + start : plen + run] = v_new
                head_in[:, start + 1 : run + 1] = hidden[:, : alen - 1 - start]
                done[0] = run
            return self._readout(head_in, fused)

        return predictor

    @torch.no_grad()
    def sample_actions(self, obs: Observation, decoder: DecodeConfig | None = None,
                       generator: torch.Generator | None = None, use_cache: bool = True, fused_lsc: bool | None = None):
        """-> actions (B, H, D) in raw units (bin centers) and the DecodeResult (bins, NFE).

        use_cache / fused_lsc: see `make_predictor` (both exact up to float rounding).
        """
        cfg = self.cfg
        dec = decoder or cfg.decoder
        result: DecodeResult = decode(self.make_predictor(obs, use_cache, dec, fused_lsc), obs.batch_size,
                                      cfg.chunk_size, cfg.slots_per_action, dec, generator, obs.text_ids.device)
        predicted = self.action_tokenizer.from_bins(result.bins.view(-1, cfg.chunk_size, cfg.slots_per_action))
        if not cfg.constant_dims:
            return predicted, result
        actions = predicted.new_empty(predicted.shape[0], cfg.chunk_size, cfg.action_dim)
        actions[..., list(cfg.token_dims)] = predicted
        actions[..., list(cfg.constant_dims)] = torch.tensor(cfg.constant_values, dtype=actions.dtype,
                                                             device=actions.device)
        return actions, result

    def cast_for_inference(self, dtype: torch.dtype = torch.bfloat16) -> LLaDAVLA:
        """Store the vision tower, projector, state projection and backbone weights in `dtype`, in place.

        For serving and evaluation, not training (optimizers want fp32 master weights).
        Autocast re-casts every fp32 weight on every call; stored bf16 weights are read
        once, at half the bytes, and on CPUs with AVX512-BF16 or AMX the matmuls run
        ~2x faster (docs/speed.md). What stays fp32: the action quantiles (the action
        tokenizer is not cast), RMSNorm and RoPE arithmetic, attention softmax, and the
        LSC logits and confidences (`lsc_logits` computes the K-way head in fp32).
        """
        for module in (self.vision, self.backbone, self.state_proj, self.fusion, self.slot_condition):
            if module is not None:
                module.to(dtype)
        return self

    def compile_for_inference(self, mode: str | None = None) -> LLaDAVLA:
        """torch.compile the vision tower and the backbone in place; weights and state dict are unchanged.

        mode None: 'reduce-overhead' (CUDA graphs) on CUDA, inductor's default (fused C++ /
        OpenMP loops around the BLAS matmuls) elsewhere. Shapes start static; a new shape
        (batch size, prefix length, the AR cache growing) recompiles once with dynamic
        shapes. The first chunks pay the compilation (~10-40 s for `tiny` on a 2-core CPU),
        so call this before serving and warm up. Measured effect: docs/speed.md.
        """
        cuda = next(self.parameters()).is_cuda
        if mode is None:
            mode = "reduce-overhead" if cuda else "default"
        # CPU: `freezing` folds the (inference-only) weights into the graph as constants and
        # prepacks them for oneDNN; with `enable_concat_linear` the q/k/v and gate/up
        # projections, which read the same input, become one matmul each; `cpp_wrapper`
        # calls the kernels from C++ instead of a Python wrapper. Together they cut the
        # per-forward overhead of a small model's denoising step (docs/speed.md).
        # Weights changed after compiling are not seen.
        options = None if cuda or mode != "default" else {"freezing": True, "cpp_wrapper": True,
                                                          "cpp.enable_concat_linear": True}
        self.backbone.forward = torch.compile(self.backbone.forward, mode=None if options else mode, options=options)
        self.vision.forward = torch.compile(self.vision.forward, mode=None if options else mode, options=options)
        self.compile_mode = mode
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
