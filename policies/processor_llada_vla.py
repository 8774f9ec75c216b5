"""Pre/post-processing pipelines of the `llada_vla` policy (LeRobot processor API).

Pre:  rename -> add batch dim -> device -> normalize (state MEAN_STD, action QUANTILES to
      [-1, 1] with the dataset's q01/q99) -> resize images -> tokenize the instruction.
Post: unnormalize actions -> CPU.

The tokenizer step reads the tokenizer the policy recorded in its config (build the
policy first: it trains the tokenizer on the dataset's tasks), or a local HF directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from lerobot.configs.types import PipelineFeatureType, PolicyFeature
from lerobot.processor import (
    AddBatchDimensionProcessorStep,
    DeviceProcessorStep,
    NormalizerProcessorStep,
    ObservationProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    ProcessorStepRegistry,
    RenameObservationsProcessorStep,
    UnnormalizerProcessorStep,
)
from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
from lerobot.processor.core import TransitionKey
from lerobot.utils.constants import (
    OBS_IMAGE,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    POLICY_POSTPROCESSOR_DEFAULT_NAME,
    POLICY_PREPROCESSOR_DEFAULT_NAME,
)

from vla.text_tokenizer import TextTokenizer

from .configuration_llada_vla import LLaDAVLAConfig


@ProcessorStepRegistry.register(name="llada_vla_tokenizer")
@dataclass
class InstructionTokenizerStep(ObservationProcessorStep):
    """Tokenize `task` (complementary data) into observation.language.{tokens,attention_mask}."""

    tokenizer_json: str | None = None  # a trained tokenizer, serialized
    tokenizer_path: str | None = None  # or a local HF tokenizer directory
    max_length: int = 32
    _tok: Any = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.tokenizer_path:
            self._tok = TextTokenizer.load(self.tokenizer_path)
        elif self.tokenizer_json:
            self._tok = TextTokenizer.from_json(self.tokenizer_json)
        else:
            raise ValueError(
                "the llada_vla tokenizer step has no tokenizer: build the policy first (make_policy "
                "trains one on the dataset's tasks and stores it in policy.tokenizer_json) or set tokenizer_path"
            )

    def observation(self, observation: dict) -> dict:
        data = self.transition.get(TransitionKey.COMPLEMENTARY_DATA) or {}
        task = data.get("task")
        if task is None:
            raise KeyError("the llada_vla policy needs a 'task' instruction with every observation")
        texts = [task] if isinstance(task, str) else list(task)
        ids, mask = self._tok(texts, self.max_length)
        device = next((v.device for v in observation.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
        return {**observation, OBS_LANGUAGE_TOKENS: ids.to(device), OBS_LANGUAGE_ATTENTION_MASK: mask.to(device)}

    def get_config(self) -> dict[str, Any]:
        return {"tokenizer_json": self.tokenizer_json, "tokenizer_path": self.tokenizer_path,
                "max_length": self.max_length}

    def transform_features(
        self, features: dict[PipelineFeatureType, dict[str, PolicyFeature]]
    ) -> dict[PipelineFeatureType, dict[str, PolicyFeature]]:
        return features


@ProcessorStepRegistry.register(name="llada_vla_resize_images")
@dataclass
class ResizeImagesStep(ObservationProcessorStep):
    """Resize every image (B, 3, H, W) to size x size (bilinear, antialiased) once, up front."""

    size: int = 96

    def observation(self, observation: dict) -> dict:
        out = dict(observation)
        for key, value in observation.items():
            if key.startswith(OBS_IMAGE) and isinstance(value, torch.Tensor) and value.ndim == 4:
                if value.shape[-2:] != (self.size, self.size):
                    out[key] = torch.nn.functional.interpolate(
                        value.float(), size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
                    )
        return out

    def get_config(self) -> dict[str, Any]:
        return {"size": self.size}

    def transform_features(self, features):
        return features


def make_llada_vla_pre_post_processors(config: LLaDAVLAConfig, dataset_stats: dict | None = None):
    features = {**config.input_features, **config.output_features}
    pre = [
        RenameObservationsProcessorStep(rename_map={}),
        AddBatchDimensionProcessorStep(),
        DeviceProcessorStep(device=config.device),
        NormalizerProcessorStep(features=features, norm_map=config.normalization_mapping, stats=dataset_stats,
                                device=config.device),
        ResizeImagesStep(size=config.image_size),
        InstructionTokenizerStep(tokenizer_json=config.tokenizer_json, tokenizer_path=config.tokenizer_path,
                                 max_length=config.max_text_len),
    ]
    post = [
        UnnormalizerProcessorStep(features=config.output_features, norm_map=config.normalization_mapping,
                                  stats=dataset_stats),
        DeviceProcessorStep(device="cpu"),
    ]
    return (
        PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](steps=pre, name=POLICY_PREPROCESSOR_DEFAULT_NAME),
        PolicyProcessorPipeline[PolicyAction, PolicyAction](
            steps=post, name=POLICY_POSTPROCESSOR_DEFAULT_NAME,
            to_transition=policy_action_to_transition, to_output=transition_to_policy_action,
        ),
    )
