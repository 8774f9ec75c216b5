"""LeRobot policy `llada_vla`: `vla.model.LLaDAVLA` behind LeRobot's PreTrainedPolicy API.

- `forward(batch)` -> (loss, metrics): masked-diffusion loss with LSC (next-token loss
  for the causal AR baseline); metrics include masked-token accuracy.
- `predict_action_chunk(batch)` -> (B, H, D) normalized actions (the postprocessor
  unnormalizes); `select_action` serves them one by one from a queue of n_action_steps.
- `update()` (LeRobot calls it after every optimizer step): the EMA of the weights
  (`ema_decay`), which is then the model that predicts (`inference_model`).

Action dims that are constant in the dataset (`drop_constant_actions`; e.g. a gripper held
closed) get no slots: their value is read from the dataset stats when the policy is first
built and recorded in the config.

The instruction tokenizer is part of the policy: a local HF tokenizer (`tokenizer_path`)
or one trained on the dataset's tasks (and paraphrases) when the policy is first built,
stored as JSON in the config so `save_pretrained` / `from_pretrained` carry it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from collections import deque
from pathlib import Path

import torch
from lerobot.configs.types import NormalizationMode
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from peft import LoraConfig, inject_adapter_in_model

from vla.device import use_bf16_autocast
from vla.model import LLaDAVLA, Observation, VLAConfig
from vla.text_tokenizer import TextTokenizer

from . import processor_llada_vla  # noqa: F401  (registers the processor steps saved checkpoints name)
from .configuration_llada_vla import LLaDAVLAConfig

PARAPHRASES_FILE = "meta/paraphrases.json"  # {canonical task: [paraphrase, ...]} in a dataset root
LORA_TARGETS = r".*blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)"


def build_tokenizer(config: LLaDAVLAConfig, dataset_meta=None) -> TextTokenizer:
    """The policy's instruction tokenizer; trains (and records) one when none is configured."""
    if config.tokenizer_path:
        return TextTokenizer.load(config.tokenizer_path)
    if config.tokenizer_json:
        return TextTokenizer.from_json(config.tokenizer_json)
    if dataset_meta is None:
        raise ValueError(
            "llada_vla has no tokenizer yet: build it from a dataset (it trains one on the tasks) "
            "or set policy.tokenizer_path to a local tokenizer directory"
        )
    root = Path(getattr(dataset_meta, "root", "") or "")
    if (root / PARAPHRASES_FILE).is_file() and not config.paraphrases:
        config.paraphrases = json.loads((root / PARAPHRASES_FILE).read_text())
    tasks = list(dataset_meta.tasks.index) if hasattr(dataset_meta.tasks, "index") else list(dataset_meta.tasks)
    texts = tasks + [p for ps in config.paraphrases.values() for p in ps]
    tokenizer = TextTokenizer.train(texts, vocab_size=config.tokenizer_vocab_size)
    config.tokenizer_json = tokenizer.to_json()
    return tokenizer


def constant_actions(config: LLaDAVLAConfig, dataset_stats: dict | None) -> tuple[list[int], list[float]]:
    """Action dims whose every value in the dataset is the same (min == max), and that value
    in the units the model sees (after the policy's action normalization)."""
    stats = (dataset_stats or {}).get(ACTION)
    if not stats or "min" not in stats or "max" not in stats:
        raise ValueError("drop_constant_actions needs the dataset's action stats (min / max); "
                         "build the policy from a dataset, or set drop_constant_actions=false")
    low, high = (torch.as_tensor(stats[k], dtype=torch.float64).flatten() for k in ("min", "max"))
    dims = [int(d) for d in torch.nonzero(low == high).flatten()]
    # What LeRobot's normalizer maps a constant to (q01 == q99 / min == max / std == 0 use its
    # epsilon guard), so that the unnormalizer gives the constant back.
    mode = config.normalization_mapping.get("ACTION", NormalizationMode.IDENTITY)
    normalized = {NormalizationMode.QUANTILES: -1.0, NormalizationMode.QUANTILE10: -1.0,
                  NormalizationMode.MIN_MAX: -1.0, NormalizationMode.MEAN_STD: 0.0}
    return dims, [normalized.get(mode, float(low[d])) for d in dims]


def to_vla_config(config: LLaDAVLAConfig, tokenizer: TextTokenizer) -> VLAConfig:
    """The model's config: the policy's model fields plus what the dataset features and the
    tokenizer give (vocab_size: the tokenizer's, or the configured one where larger)."""
    state = config.robot_state_feature
    return config.model_config(
        action_dim=config.action_feature.shape[0], cameras=tuple(config.image_features),
        state_dim=state.shape[0] if (config.use_state and state is not None) else 0,
        **{**tokenizer.config_fields(), "vocab_size": max(tokenizer.vocab_size, config.vocab_size or 0)})


class LLaDAVLAPolicy(PreTrainedPolicy):
    config_class = LLaDAVLAConfig
    name = "llada_vla"

    def __init__(self, config: LLaDAVLAConfig, dataset_stats=None, dataset_meta=None, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.tokenizer = build_tokenizer(config, dataset_meta)
        if config.drop_constant_actions and config.constant_action_dims is None:
            config.constant_action_dims, config.constant_action_values = constant_actions(config, dataset_stats)
        self.model = LLaDAVLA(to_vla_config(config, self.tokenizer))
        self.model.backbone.gradient_checkpointing = config.gradient_checkpointing
        if config.lora_rank > 0:
            self._add_lora()
        # EMA of the weights (inference uses it); shares the config, so decoder switches reach it
        self.model_ema = None
        if config.ema_decay is not None:
            self.model_ema = copy.deepcopy(self.model).requires_grad_(False)
            self.model_ema.cfg = self.model.cfg
        self._queue: deque[torch.Tensor] = deque()
        # training forwards and seconds so far (saved with the weights, so a resumed run keeps counting)
        self.register_buffer("train_forwards", torch.zeros((), dtype=torch.long))
        self.register_buffer("train_seconds", torch.zeros((), dtype=torch.float64))

    @property
    def inference_model(self) -> LLaDAVLA:
        """The model that predicts actions: the EMA weights when kept, else the trained ones."""
        return self.model if self.model_ema is None else self.model_ema

    @torch.no_grad()
    def update(self) -> None:
        """After each optimizer step (LeRobot's hook): move the EMA towards the weights, with
        the usual warm-up min(decay, (1 + n) / (10 + n)) so early averages do not hold the init."""
        if self.model_ema is None:
            return
        n = int(self.train_forwards)
        decay = min(self.config.ema_decay, (1 + n) / (10 + n))
        for ema, live in zip(self.model_ema.parameters(), self.model.parameters(), strict=True):
            ema.lerp_(live.detach(), 1.0 - decay)

    def _add_lora(self) -> None:
        """LoRA on every backbone linear; only the K action rows of wte / ff_out stay trainable."""
        bb = self.model.backbone
        for p in bb.parameters():
            p.requires_grad_(False)
        inject_adapter_in_model(LoraConfig(r=self.config.lora_rank, lora_alpha=self.config.lora_alpha,
                                           target_modules=LORA_TARGETS, lora_dropout=0.0), bb)
        offset = self.model.action_tokenizer.offset
        for weight in (bb.wte.weight, bb.ff_out.weight):
            weight.requires_grad_(True)
            weight.register_hook(lambda g, o=offset: torch.cat([torch.zeros_like(g[:o]), g[o:]]))

    def get_optim_params(self):
        if self.config.lora_rank == 0:
            return self.model.parameters()
        frozen_rows = {id(self.model.backbone.wte.weight), id(self.model.backbone.ff_out.weight)}
        trainable = [p for p in self.parameters() if p.requires_grad]
        return [  # no weight decay on the partly frozen embedding / head (it would move text rows)
            {"params": [p for p in trainable if id(p) not in frozen_rows]},
            {"params": [p for p in trainable if id(p) in frozen_rows], "weight_decay": 0.0},
        ]

    def reset(self) -> None:
        self._queue.clear()

    def prepare_for_inference(self, bf16_weights: bool = False, compile: bool = False) -> LLaDAVLAPolicy:
        """Serving / evaluation speed-ups, in place (measured in docs/speed.md): weights stored in
        bf16 (`LLaDAVLA.cast_for_inference`) and torch.compile (`LLaDAVLA.compile_for_inference`;
        the first chunks pay the compilation, so warm up before the clock matters). The policy
        is for inference only afterwards: do not train or save it."""
        self.eval()
        if bf16_weights:
            self.inference_model.cast_for_inference(torch.bfloat16)
        if compile:
            self.inference_model.compile_for_inference()
        return self

    def set_decoder(self, name: str | None = None, steps: int | None = None, threshold: float | None = None) -> None:
        """Switch the decoder (and/or its step count, and the `threshold` decoder's confidence
        threshold) in place, so decoders can be compared on one checkpoint. `ar` without
        `steps` decodes one slot per forward."""
        cur = self.model.cfg.decoder
        if name is None and steps is None and threshold is None:
            return
        name = name or cur.name
        if self.config.attention == "causal" and name != "ar":
            raise ValueError(f"this checkpoint is the causal AR baseline; only decoder 'ar' applies, not {name!r}")
        new_steps = steps if steps is not None else (None if name == "ar" else cur.steps)
        new_threshold = cur.threshold if threshold is None else threshold
        self.model.cfg.decoder = dataclasses.replace(cur, name=name, steps=new_steps, threshold=new_threshold)
        self.config.decoder, self.config.decode_steps, self.config.threshold = name, new_steps, new_threshold

    def decoding(self) -> dict:
        """What decodes a chunk, for reports: decoder, steps, action slots (and threshold)."""
        dec = self.model.cfg.decoder
        return {"decoder": dec.name, "decode_steps": dec.steps, "action_slots": self.model.cfg.action_len,
                **({"threshold": dec.threshold} if dec.name == "threshold" else {})}

    def _autocast(self, device: torch.device):
        enabled = use_bf16_autocast(device, self.config.use_bf16)
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def _paraphrase(self, tasks: list[str], seeds: list[int] | None) -> list[str]:
        """Training-time augmentation: each task becomes one of its paraphrases with paraphrase_prob."""
        out = []
        for i, task in enumerate(tasks):
            rng = random.Random(seeds[i]) if seeds is not None else random
            options = self.config.paraphrases.get(task)
            out.append(rng.choice(options) if options and rng.random() < self.config.paraphrase_prob else task)
        return out

    def _observation(self, batch: dict, augment: bool = False, seeds: torch.Tensor | None = None) -> Observation:
        images = {key: batch[key] for key in self.config.image_features}
        device = next(iter(images.values())).device
        tasks = batch.get("task")
        if augment and tasks is not None and self.config.paraphrases and self.config.paraphrase_prob > 0:
            tasks = self._paraphrase(list(tasks), None if seeds is None else seeds.tolist())
            ids, mask = self.tokenizer(tasks, self.config.max_text_len)
        elif OBS_LANGUAGE_TOKENS in batch:
            ids, mask = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
        elif tasks is not None:
            ids, mask = self.tokenizer([tasks] if isinstance(tasks, str) else list(tasks), self.config.max_text_len)
        else:
            raise KeyError(f"batch has neither '{OBS_LANGUAGE_TOKENS}' nor 'task'; keys: {sorted(batch)}")
        state = batch.get(OBS_STATE) if self.model.cfg.state_dim > 0 else None
        return Observation(images, ids.to(device), mask.to(device).bool(), state)

    def forward(self, batch: dict, reduction: str = "mean") -> tuple[torch.Tensor, dict]:
        seeds = None
        if self.training and self.config.deterministic_masking and "index" in batch:
            seeds = batch["index"].long().cpu() * 1_000_003 + int(self.train_forwards) * 7_919 + 17
        if self.training:
            self.train_forwards += 1
        obs = self._observation(batch, augment=self.training, seeds=seeds)
        valid = batch.get(f"{ACTION}_is_pad")
        valid = None if valid is None else ~valid.bool()
        with self._autocast(obs.text_ids.device):
            loss, metrics = self.model.compute_loss(obs, batch[ACTION], action_valid=valid, sample_seeds=seeds)
        return loss, {k: float(v.detach()) for k, v in metrics.items()}

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, **kwargs) -> torch.Tensor:
        """-> (B, chunk_size, D) actions in normalized units."""
        obs = self._observation(batch)
        with self._autocast(obs.text_ids.device):
            actions, result = self.inference_model.sample_actions(obs, generator=kwargs.get("generator"))
        self.last_nfe = result.nfe  # forwards of the latest chunk (evaluation reports NFE per chunk)
        return actions.float()

    @torch.no_grad()
    def select_action(self, batch: dict, **kwargs) -> torch.Tensor:
        """-> (B, D): the next queued action; a new chunk is predicted when the queue is empty."""
        if not self._queue:
            chunk = self.predict_action_chunk(batch, **kwargs)[:, : self.config.n_action_steps]
            self._queue.extend(chunk.transpose(0, 1))  # n_action_steps tensors of (B, D)
        return self._queue.popleft()

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        self.tokenizer.save(save_directory)  # also as a standalone file for inspection / reuse
