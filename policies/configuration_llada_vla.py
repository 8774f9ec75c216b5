"""LeRobot configuration of the `llada_vla` policy (LeRobot 0.4.4 plugin naming).

Load with `--policy.discover_packages_path=vla.policies --policy.type=llada_vla`. The model's
fields are `vla.model.VLAConfig`'s under their flat names (`vla.model.flat_names`: `d_model`,
`vision_encoder`, `decode_steps`, ...) and become the model's config by name
(`model_config`), which also validates them; the other fields are the policy's own
(training, LoRA, tokenizer, EMA). The defaults are the tiny CPU size; scale is a config
value, so the LLaDA-8B paper preset is the same class with other numbers (named presets:
`configs/*.json`).

Normalization: actions use QUANTILES (q01/q99 -> [-1, 1], the action tokenizer's bins
then cover [-1, 1]); state uses MEAN_STD; images stay in [0, 1] (the vision tower applies
the encoder's own mean/std).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import NormalizationMode
from lerobot.optim.optimizers import AdamWConfig
from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig

from vla.model import VLAConfig, flat_names


@PreTrainedConfig.register_subclass("llada_vla")
@dataclass
class LLaDAVLAConfig(PreTrainedConfig):
    # -- action chunking -------------------------------------------------------------
    chunk_size: int = 5  # H: actions predicted per chunk (paper: 5)
    n_action_steps: int = 5  # actions executed from each chunk before predicting again (<= chunk_size)
    num_bins: int = 32  # K: action tokens shared by all dims (paper: 32; OpenVLA: 256)
    # -- decoding ----------------------------------------------------------------------
    decoder: str = "had"  # had | low_confidence | threshold | ar
    decode_steps: int | None = 10  # forwards per chunk (paper: 10 for 5 actions); None = one per slot
    temperature: float = 0.0  # Gumbel noise on proposals; 0 = greedy
    threshold: float = 0.9  # confidence threshold of the `threshold` decoder
    remask: float | None = None  # secondary-remasking threshold (Discrete Diffusion VLA); None = off
    attention: str = "prefix"  # prefix (cached prefix) | full (LLaDA's) | causal (AR baseline)
    # -- vision --------------------------------------------------------------------------
    vision_encoder: str = "vit_tiny_patch16_224"  # any timm model name
    vision_kwargs: dict = field(default_factory=lambda: {"depth": 4})  # extra timm kwargs
    image_size: int = 96  # encoder input resolution (images are resized to it)
    vision_weights_path: str | None = None  # local timm-format weights; None = random init
    freeze_vision: bool = False
    vision_film: bool = False  # FiLM: the instruction scales/shifts every vision block's output
    vision_keypoints: int = 0  # spatial-softmax keypoint tokens (expected x, y of K heat maps); 0 = none
    vision_token_grid: int = 0  # > 0: pool the feature map to this many tokens per side (keypoints read the full map)
    vision_lang_keypoints: int = 0  # keypoints whose heat map is the instruction's query against each cell; 0 = none
    # -- backbone ------------------------------------------------------------------------
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    mlp_hidden: int = 704
    rope_theta: float = 10000.0
    vocab_size: int | None = None  # text embedding rows; None = the tokenizer's size (LLaDA-8B: 126464)
    backbone_path: str | None = None  # local LLaDA / LLaDA-V checkpoint dir; overrides the sizes above
    lora_rank: int = 0  # > 0: freeze the backbone and train LoRA adapters of this rank (peft)
    lora_alpha: int = 16
    gradient_checkpointing: bool = False
    # -- language ------------------------------------------------------------------------
    tokenizer_path: str | None = None  # local HF tokenizer dir (LLaDA's); None = train one on the tasks
    tokenizer_vocab_size: int = 512  # size of the trained tokenizer
    max_text_len: int = 32  # instruction tokens kept
    paraphrase_prob: float = 0.5  # training: chance to swap a task for one of its paraphrases
    # Filled automatically when the policy is built (do not set by hand): the trained
    # tokenizer (JSON, so it travels inside config.json) and the dataset's paraphrases.
    tokenizer_json: str | None = None
    paraphrases: dict = field(default_factory=dict)
    # -- inputs and training ---------------------------------------------------------------
    use_state: bool = True  # add observation.state as one token (the paper uses none)
    loss_weighting: str = "mean"  # mean (1/|M|) | inv_t (LLaDA's 1/t)
    mask_eps: float = 1e-3
    full_mask_prob: float = 0.0  # share of samples with every action slot masked (decoding's first step)
    num_maskings: int = 1  # independent maskings of each sample's action block per prefix encoding
    slot_embeddings: bool = False  # a learned embedding per action slot (its step and dim)
    label_sigma: float = 0.0  # soft targets over neighbouring bins (Gaussian std in bins); 0 = one-hot CE
    fusion_token: bool = False  # one prefix token: an MLP over [keypoints, instruction, state] (needs keypoints)
    fusion_slots: bool = False  # each action slot's input gets its own projection of the fused token
    random_shift: int = 0  # image augmentation: shift by up to this many pixels (pad + random crop, DrQ); 0 = off
    drop_constant_actions: bool = False  # no slots for action dims that are constant in the dataset
    # Filled automatically from the dataset stats when the policy is first built (do not set by hand;
    # None = not yet computed, [] = computed and none constant):
    constant_action_dims: list | None = None
    constant_action_values: list | None = None  # in normalized units
    ema_decay: float | None = None  # keep an EMA of the weights (used for inference); None = off
    anneal_over_budget: bool = True  # with a time budget (--max-minutes), the LR decay spans that budget
    # Mask (and paraphrase) each training sample from a seed of (frame index, training
    # step): the same draws whatever the batch split, process count or resume (falls back
    # to the global RNG when the batch has no `index`).
    deterministic_masking: bool = True
    use_bf16: bool | None = None  # bf16 autocast; None = on for CUDA and CPUs with native bf16 (AMX / AVX512-BF16)
    normalization_mapping: dict = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.QUANTILES,
        }
    )
    optimizer_lr: float = 3e-4
    optimizer_weight_decay: float = 0.01
    optimizer_grad_clip_norm: float = 1.0
    scheduler_warmup_steps: int = 200
    scheduler_decay_steps: int = 30_000
    scheduler_decay_lr: float = 3e-5

    def __post_init__(self):
        super().__post_init__()
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size={self.chunk_size} must be >= 1: actions predicted per chunk")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps={self.n_action_steps} must be in [1, chunk_size={self.chunk_size}]: "
                "a policy cannot execute more actions than it predicts"
            )
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank={self.lora_rank} must be >= 0 (0 disables LoRA)")
        if not 0.0 <= self.paraphrase_prob <= 1.0:
            raise ValueError(f"paraphrase_prob={self.paraphrase_prob} must lie in [0, 1]")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay} must lie in (0, 1), e.g. 0.999, or be null (off)")
        self.model_config()  # the model's own validation, with the data-given fields at their defaults

    def model_config(self, **data) -> VLAConfig:
        """The model's config from this config's model fields (`vla.model.flat_names`); `data`: the
        fields the dataset and tokenizer give (action_dim, state_dim, cameras, vocab_size, special ids)."""
        names = flat_names()
        return VLAConfig.from_flat({f.name: getattr(self, f.name) for f in fields(self) if f.name in names}, **data)

    # -- LeRobot interface -----------------------------------------------------------------
    @property
    def observation_delta_indices(self) -> None:
        return None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, weight_decay=self.optimizer_weight_decay,
                           grad_clip_norm=self.optimizer_grad_clip_norm)

    def get_scheduler_preset(self) -> CosineDecayWithWarmupSchedulerConfig:
        return CosineDecayWithWarmupSchedulerConfig(
            peak_lr=self.optimizer_lr, decay_lr=self.scheduler_decay_lr,
            num_warmup_steps=self.scheduler_warmup_steps, num_decay_steps=self.scheduler_decay_steps,
        )

    def validate_features(self) -> None:
        if not self.image_features:
            raise ValueError(
                "llada_vla needs at least one image feature (observation.image or observation.images.<cam>); "
                f"the dataset provides {sorted(self.input_features or {})}"
            )
        if self.action_feature is None:
            raise ValueError("llada_vla needs an 'action' output feature")
