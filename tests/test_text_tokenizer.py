import pytest

from vla.text_tokenizer import TextTokenizer

from .conftest import INSTRUCTIONS


def test_training_is_deterministic_and_order_independent():
    a = TextTokenizer.train(INSTRUCTIONS, vocab_size=96)
    b = TextTokenizer.train(list(reversed(INSTRUCTIONS)) * 2, vocab_size=96)
    assert a.backend.get_vocab() == b.backend.get_vocab()
    assert a.encode_one(INSTRUCTIONS[0]) == b.encode_one(INSTRUCTIONS[0])


def test_batch_encoding_pads_and_masks(tokenizer):
    ids, mask = tokenizer(["touch the blue block", "push the red block onto the green zone"], max_length=6)
    assert ids.shape == mask.shape and ids.shape[1] <= 6
    n0 = int(mask[0].sum())
    assert (ids[0, n0:] == tokenizer.pad_id).all() and mask[0, :n0].all()
    assert len({tokenizer.pad_id, tokenizer.sep_id, tokenizer.mask_id}) == 3
    # unseen words still encode (unknown characters map to [UNK])
    assert len(tokenizer.encode_one("grasp the purple thing!")) > 0


def test_save_load_round_trip(tmp_path, tokenizer):
    tokenizer.save(tmp_path)
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.encode_one(INSTRUCTIONS[1]) == tokenizer.encode_one(INSTRUCTIONS[1])
    assert (loaded.pad_id, loaded.sep_id, loaded.mask_id) == (tokenizer.pad_id, tokenizer.sep_id, tokenizer.mask_id)


def test_local_hf_directory_with_llada_mask_token(tmp_path, tokenizer):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, eos_token="[SEP]", pad_token="[PAD]")
    hf.add_special_tokens({"additional_special_tokens": ["<|mdm_mask|>"]})
    hf.save_pretrained(tmp_path)
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.mask_id == hf.convert_tokens_to_ids("<|mdm_mask|>")
    assert loaded.sep_id == hf.eos_token_id and loaded.pad_id == hf.pad_token_id
    assert loaded.vocab_size == len(hf)
    assert loaded.encode_one("touch the blue block") == tokenizer.encode_one("touch the blue block")


def test_missing_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextTokenizer.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer_config.json"):
        TextTokenizer.load(tmp_path)
    with pytest.raises(ValueError, match="no instructions"):
        TextTokenizer.train([])
