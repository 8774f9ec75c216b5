import pytest
import torch

from vla.action_tokenizer import ActionTokenizer


@pytest.mark.parametrize("num_bins", [32, 256])
def test_round_trip_within_half_bin(num_bins):
    g = torch.Generator().manual_seed(1)
    low, high = -torch.rand(7, generator=g) * 3, torch.rand(7, generator=g) * 2 + 0.1
    tok = ActionTokenizer(low, high, num_bins, offset=1000)
    actions = low + (high - low) * torch.rand(64, 5, 7, generator=g)
    ids = tok.encode(actions)
    assert ids.shape == (64, 35)
    assert ids.min() >= 1000 and ids.max() < 1000 + num_bins
    back = tok.decode(ids, chunk_size=5)
    err_normalized = (tok.normalize(back) - tok.normalize(actions)).abs()
    assert err_normalized.max() <= tok.bin_width / 2 + 1e-5
    # in raw units: half a bin of each dim's range
    half_bin_raw = (high - low) / num_bins / 2
    assert ((back - actions).abs() <= half_bin_raw + 1e-5).all()


def test_flattening_is_row_major_and_bins_shared():
    tok = ActionTokenizer(-torch.ones(2), torch.ones(2), 4, offset=10)
    actions = torch.tensor([[[-1.0, 1.0], [0.1, -0.4]]])  # (1, H=2, D=2); bins of width 0.5
    assert tok.encode(actions).tolist() == [[10, 13, 12, 11]]


def test_clipping_outside_quantiles():
    tok = ActionTokenizer(torch.zeros(3), torch.ones(3), 32)
    bins = tok.to_bins(torch.tensor([[-5.0, 0.5, 7.0]]))
    assert bins.tolist() == [[0, 16, 31]]


def test_from_lerobot_stats_uses_quantiles():
    stats = {"min": [-9.0], "max": [9.0], "q01": [-1.0], "q99": [3.0], "mean": [0.0]}
    tok = ActionTokenizer.from_stats(stats, num_bins=32)
    assert tok.low.tolist() == [-1.0] and tok.high.tolist() == [3.0]
    with pytest.raises(ValueError, match="q01"):
        ActionTokenizer.from_stats({"mean": [0.0]})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_actions_raise(bad):
    tok = ActionTokenizer(-torch.ones(2), torch.ones(2), 32)
    with pytest.raises(ValueError, match="NaN/inf"):
        tok.encode(torch.tensor([[[0.0, bad]]]))


def test_wrong_shapes_raise():
    tok = ActionTokenizer(-torch.ones(2), torch.ones(2), 32)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 2\)"):
        tok.to_bins(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"expected \(B, H, D\)"):
        tok.encode(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="expected"):
        tok.decode(torch.zeros(1, 5, dtype=torch.long), chunk_size=2)
    with pytest.raises(ValueError, match="high < low"):
        ActionTokenizer(torch.ones(2), torch.zeros(2))
