"""Instruction tokenizer: a local Hugging Face tokenizer, or a small one trained here.

Two sources (DESIGN.md section 4, "Tokenizer"):
- a local tokenizer directory (LLaDA's at scale), loaded with `AutoTokenizer` and
  `local_files_only=True`; nothing is ever fetched from a hub;
- otherwise a small BPE tokenizer trained with `tokenizers` on the dataset's
  instructions (deterministic for the same instruction list), saved with the model.

Both expose the same few ids the model needs: pad, sep (end of the prefix) and mask (the
masked-diffusion [MASK] token; LLaDA's is `<|mdm_mask|>`). Ids always come from the
tokenizer, never from literals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer

SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "sep": "[SEP]", "mask": "[MASK]"}
# LLaDA's tokenizer names its mask token this way (id 126336 in LLaDA-8B).
LLADA_MASK_TOKEN = "<|mdm_mask|>"
TOKENIZER_FILE = "tokenizer.json"


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer` or a transformers tokenizer behind one interface."""

    def __init__(self, backend, pad_id: int, sep_id: int, mask_id: int, hf: bool):
        self.backend = backend
        self.pad_id, self.sep_id, self.mask_id = pad_id, sep_id, mask_id
        self._hf = hf

    # -- construction -----------------------------------------------------------------
    @classmethod
    def train(cls, instructions: Sequence[str], vocab_size: int = 512) -> TextTokenizer:
        """Train a lowercase BPE tokenizer on `instructions` (order-independent: sorted)."""
        texts = sorted({str(t) for t in instructions})
        if not texts:
            raise ValueError("no instructions to train the tokenizer on; pass task strings")
        tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
        )
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS.values()),
            initial_alphabet=list("abcdefghijklmnopqrstuvwxyz0123456789.,-'"),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls._from_tokenizers(tok)

    @classmethod
    def _from_tokenizers(cls, tok) -> TextTokenizer:
        ids = {k: tok.token_to_id(v) for k, v in SPECIAL_TOKENS.items()}
        missing = [SPECIAL_TOKENS[k] for k, v in ids.items() if v is None]
        if missing:
            raise ValueError(f"tokenizer lacks special tokens {missing}; retrain it with TextTokenizer.train")
        return cls(tok, ids["pad"], ids["sep"], ids["mask"], hf=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextTokenizer:
        """Load from a directory: ours (`tokenizer.json` with [MASK]) or a HF tokenizer dir."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer directory {path} does not exist")
        if (path / "tokenizer_config.json").exists():
            return cls._from_hf_dir(path)
        if (path / TOKENIZER_FILE).exists():
            return cls._from_tokenizers(Tokenizer.from_file(str(path / TOKENIZER_FILE)))
        raise FileNotFoundError(
            f"{path} holds neither tokenizer_config.json (a Hugging Face tokenizer) nor "
            f"{TOKENIZER_FILE}; point tokenizer_path at a tokenizer directory"
        )

    @classmethod
    def _from_hf_dir(cls, path: Path) -> TextTokenizer:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        vocab = tok.get_vocab()
        if LLADA_MASK_TOKEN in vocab:
            mask_id = vocab[LLADA_MASK_TOKEN]
        elif tok.mask_token is not None:
            mask_id = tok.mask_token_id
        else:
            tok.add_special_tokens({"mask_token": SPECIAL_TOKENS["mask"]})
            mask_id = tok.mask_token_id
        sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        if sep_id is None:
            tok.add_special_tokens({"sep_token": SPECIAL_TOKENS["sep"]})
            sep_id = tok.sep_token_id
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else sep_id
        return cls(tok, pad_id, sep_id, mask_id, hf=True)

    @classmethod
    def from_json(cls, text: str) -> TextTokenizer:
        """Rebuild a trained tokenizer from `to_json()` (it travels inside a policy config)."""
        return cls._from_tokenizers(Tokenizer.from_str(text))

    def to_json(self) -> str:
        if self._hf:
            raise ValueError("a Hugging Face tokenizer directory is referenced by path, not serialized")
        return self.backend.to_str()

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self._hf:
            self.backend.save_pretrained(str(path))
        else:
            self.backend.save(str(path / TOKENIZER_FILE))

    # -- use --------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids the embedding must hold (including added special tokens)."""
        return len(self.backend) if self._hf else self.backend.get_vocab_size()

    def config_fields(self) -> dict[str, int]:
        """The model fields this tokenizer decides (`VLAConfig.from_flat(..., **tok.config_fields())`)."""
        return {"vocab_size": self.vocab_size, "pad_token_id": self.pad_id, "sep_token_id": self.sep_id,
                "mask_token_id": self.mask_id}

    def encode_one(self, text: str) -> list[int]:
        if self._hf:
            return self.backend.encode(text, add_special_tokens=False)
        return self.backend.encode(text).ids

    def __call__(self, texts: Sequence[str], max_length: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize a batch -> (ids (B, T) long, mask (B, T) bool), right-padded, truncated.

        T is the longest sequence in the batch, at most `max_length`.
        """
        if isinstance(texts, str):
            raise TypeError("pass a list of instructions, not a single string")
        seqs = [self.encode_one(t)[:max_length] for t in texts]
        width = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = True
        return ids, mask
