"""The shared builders in conftest.py keep their promises, on which the numbers of other test files rest: a private
generator's draws equal the global stream's from the same seed, `toy_mlp` leaves the global stream where
`torch.manual_seed` plus the layers would, and bad settings are refused by name before anything is drawn."""
import pytest, torch, torch.nn as nn
from conftest import toy_mlp, toy_xy, teacher_xy, toy_dataset, adam_fit


def test_toy_xy_equals_the_global_stream_and_leaves_it_alone():
    torch.manual_seed(7); X, Y = torch.randn(30, 4), torch.randint(0, 5, (30,)); after = torch.get_rng_state()
    X2, Y2 = toy_xy(30, 4, 5, seed=7)
    assert torch.equal(X, X2) and torch.equal(Y, Y2) and torch.equal(torch.get_rng_state(), after)
    assert toy_xy(6, (1, 2, 2), 3)[0].shape == (6, 1, 2, 2) and toy_xy(6, dtype=torch.float64)[0].dtype == torch.float64


def test_toy_mlp_is_manual_seed_then_the_layers():
    torch.manual_seed(3)
    ref = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.1), nn.Linear(6, 6),
                        nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.1), nn.Linear(6, 2)).double()
    x_ref = torch.randn(3)                                          # the global stream after the weights
    m = toy_mlp(4, 6, 2, depth=2, act=nn.Tanh, bn='running', dropout=0.1, seed=3, dtype=torch.float64)
    assert repr(m) == repr(ref) and torch.equal(torch.randn(3), x_ref)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values()))
    assert toy_mlp(bn='batch')[1].track_running_stats is False and toy_mlp(bn='running')[1].track_running_stats


def test_toy_dataset_splits_and_labels():
    d = toy_dataset(50, 20, d=6, k=3)
    X, Y = teacher_xy(70, 6, 3)
    assert torch.equal(d.Xtr, X[:50]) and torch.equal(d.Yte, Y[50:]) and d.n_classes == 3
    r = toy_dataset(50, 20, labels='random')
    assert r.Xtr.shape == (50, 40) and r.Xte.shape == (20, 40) and int(r.Ytr.max()) < 10
    assert torch.equal(r.Xtr, toy_xy(50, 40, 10)[0])                 # the train split is drawn first


def test_adam_fit_lowers_the_loss():
    X, Y = teacher_xy(200, 8, 3)
    m = toy_mlp(8, 16, 3)
    f = lambda: nn.functional.cross_entropy(m(X), Y).item()
    before = f()
    assert adam_fit(m, X, Y, 50) is m and f() < 0.5*before


def test_bad_settings_are_refused_before_any_draw():
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"toy_mlp: bn='train' is not one of \[None, 'batch', 'running'\]"): toy_mlp(bn='train')
    with pytest.raises(ValueError, match="toy_dataset: labels='noisy' is not 'teacher' or 'random'"): toy_dataset(labels='noisy')
    assert torch.equal(torch.get_rng_state(), state)
