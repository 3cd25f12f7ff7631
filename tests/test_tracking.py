"""Tracking during training (`train(track=...)`, `lbsharp.tracking.Tracker`): the hook runs at x0, every k epochs and
the last; a tracked run trains bit-identically to an untracked one; λmax warm-started agrees with the exact Hessian and
with a cold start, in fewer products; the track survives a resume; bad track settings fail before any work; models
returning tuples or `.logits` train through the batch contract, dict inputs are refused by name."""
import json, subprocess, sys, os
from pathlib import Path
from types import SimpleNamespace
import pytest, torch, torch.nn as nn
import lbsharp as lbs
from lbsharp.training import train, plain_step, History
from lbsharp.tracking import Tracker, TRACKED, known, _eval_set
from lbsharp.hessian import exact_hessian
from lbsharp.experiments import validate, load_runs
from conftest import toy_mlp, toy_dataset

def toy_data(): return toy_dataset(400, 100, d=6, k=3)
def toy_model(): return toy_mlp(6, 16, 3, bn='running', dropout=0.2)   # BN running statistics and dropout draws matter

vec = lambda m: nn.utils.parameters_to_vector(m.parameters()).detach()
noisy = lambda xb: xb + 0.05*torch.randn_like(xb)   # augmentation from the global random stream
small = dict(n_eval=200, probes=4, every=2)

class Recorder:
    "A track hook that records the epochs it is called at."
    def __init__(self, every): self.every, self.epochs = every, []
    def __call__(self, model, data, epoch): self.epochs.append(epoch); return dict(n=len(data[0]))

def test_hook_epochs():
    r = Recorder(3)
    h = train(toy_model(), toy_data(), batch=64, epochs=7, quiet=True, track=r)
    assert r.epochs == [0, 3, 6, 7]                              # x0, every 3rd, and the last epoch
    assert [row['epoch'] for row in h.log if 'track' in row] == [0, 3, 6, 7]
    assert h.tracked('n') == ([0, 3, 6, 7], [400]*4)
    assert all(row['track_seconds'] >= 0 for row in h.log if 'track' in row)
    assert 'Recorder' in h.config['track']                       # recorded (a function/object as its name) and checked on resume
    with pytest.raises(KeyError, match="no tracked quantity 'lam'"): h.tracked('lam')

def test_hook_under_stopping_rule():
    r = Recorder(4)
    h = train(toy_model(), toy_data(), batch=400, lr=1e-6, patience=2, min_delta=0.5, quiet=True, track=r)
    last = h.final['epoch']
    assert h.stop == 'plateau' and last % 4 != 0 and r.epochs[-1] == last   # the stop epoch is measured too

def test_bad_hooks_fail_before_work():
    with pytest.raises(TypeError, match='track=5'): train(toy_model(), toy_data(), epochs=1, track=5, quiet=True)
    bad = Recorder(0)
    with pytest.raises(ValueError, match='track.every=0'): train(toy_model(), toy_data(), epochs=1, track=bad, quiet=True)
    assert bad.epochs == []
    with pytest.raises(TypeError, match='must return a dict'): train(toy_model(), toy_data(), epochs=1, track=lambda m, d, e: 1., quiet=True)
    for kw, msg in ((dict(measures=('lam',)), "unknown \\['lam'\\]"), (dict(every=0), 'every=0'), (dict(eps=0), 'eps=0'),
                    (dict(bn='train'), "bn='train'"), (dict(n_eval=1), 'n_eval=1'), (dict(probes=1), 'probes=1')):
        with pytest.raises(ValueError, match=msg): Tracker(**kw)
    with pytest.raises(ValueError, match="unknown track setting\\(s\\) \\['evry'\\]"): Tracker.from_dict({'evry': 2})
    with pytest.raises(ValueError, match='n_eval=999 exceeds the 400'):
        train(toy_model(), toy_data(), epochs=1, track=Tracker(n_eval=999), quiet=True)

@pytest.mark.parametrize('bn', ['model', 'recompute', 'batch'])
def test_tracking_leaves_training_bit_identical(bn):
    runs = []
    for track in (None, Tracker(bn=bn, **small)):
        m = toy_model()
        h = train(m, toy_data(), batch=64, epochs=4, quiet=True, augment=noisy, track=track)
        runs.append((vec(m), [b for b in m.buffers()], h['train_loss'], h['batch_loss']))
    (w0, b0, l0, bl0), (w1, b1, l1, bl1) = runs
    assert torch.equal(w0, w1) and all(torch.equal(a, b) for a, b in zip(b0, b1))   # weights and BN running statistics
    assert l0 == l1 and bl0 == bl1

def test_hook_drawing_random_numbers_leaves_training_bit_identical():
    "A hook that draws from the global random stream (dropout's, augmentation's) does not shift training's draws."
    runs = []
    for track in (None, lambda m, d, e: dict(u=float(torch.rand(()))), None):
        m = toy_model(); train(m, toy_data(), batch=64, epochs=3, quiet=True, augment=noisy, track=track); runs.append(vec(m))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])

def test_lambda_max_exact_and_warm_start_saves_products():
    t = Tracker(measures=('lambda_max',), n_eval=200, tol=1e-6, cold_check=True, every=1)
    m = toy_model()
    h = train(m, toy_data(), batch=64, epochs=6, quiet=True, track=t)
    X, Y = _eval_set(toy_data().Xtr, toy_data().Ytr, 200)
    m.eval()
    H = exact_hessian(m, (X, Y))
    lam = float(torch.linalg.eigvalsh(H.double())[-1])
    assert abs(h.final['track']['lambda_max'] - lam) <= 1e-4*abs(lam)   # against the dense Hessian
    rows = [r['track'] for r in h.log[1:]]
    assert all(r['lambda_warm'] for r in rows) and not h.log[0]['track']['lambda_warm']
    for r in rows: assert abs(r['lambda_max'] - r['lambda_max_cold']) <= 1e-4*abs(r['lambda_max_cold'])
    warm, cold = sum(r['lambda_products'] for r in rows), sum(r['lambda_products_cold'] for r in rows)
    assert warm < cold, (warm, cold)

def test_all_measures_and_registry():
    assert list(TRACKED) == ['lambda_max', 'trace', 'phi']
    TRACKED['n_params'] = lambda t, model, X, Y, hessian: dict(n_params=hessian().n)   # one entry extends the measure set
    try:
        h = train(toy_model(), toy_data(), batch=64, epochs=2, quiet=True, track=Tracker(measures=('n_params', 'phi'), **small))
    finally: del TRACKED['n_params']
    assert h.tracked('n_params')[1] == [16*6+16+32+16*3+3]*2
    e, phi = h.tracked('phi')
    assert e == [0, 2] and all(p > 0 for p in phi)
    h = train(toy_model(), toy_data(), batch=64, epochs=2, quiet=True, track=Tracker(**small))
    r = h.final['track']
    assert {'lambda_max', 'trace', 'trace_se', 'phi', 'f', 'lambda_products', 'trace_products'} <= set(r)
    assert r['trace_products'] == 4 and r['lambda_max'] > 0 and r['trace_se'] > 0

class Interrupt(Exception): pass

def test_track_stored_and_resumed(tmp_path):
    t_full = Tracker(**small)
    m = toy_model(); full = train(m, toy_data(), batch=64, epochs=6, quiet=True, track=t_full)
    n = [0]
    def step(model, opt, xb, yb):
        n[0] += 1
        if n[0] == 7*4: raise Interrupt                      # during epoch 4 (7 updates per epoch)
        return plain_step(model, opt, xb, yb)
    m = toy_model()
    with pytest.raises(Interrupt): train(m, toy_data(), batch=64, epochs=6, quiet=True, track=Tracker(**small), step=step, checkpoint_dir=tmp_path)
    ck = torch.load(sorted(tmp_path.glob('epoch_*.pt'))[-1], weights_only=True)
    assert ck['epoch'] == 3 and ck['track']['v'].shape == (sum(p.numel() for p in m.parameters()),)   # the warm-start vector
    n[0] = -10**9
    m = toy_model()
    res = train(m, toy_data(), batch=64, epochs=6, quiet=True, track=Tracker(**small), step=step, checkpoint_dir=tmp_path, resume=True)
    drop = lambda r: {k: v for k, v in r['track'].items() if not k.endswith('seconds')}
    assert [drop(r) for r in res.log if 'track' in r] == [drop(r) for r in full.log if 'track' in r]
    with pytest.raises(ValueError, match="settings \\['track'\\] differ"):
        train(toy_model(), toy_data(), batch=64, epochs=8, quiet=True, track=Tracker(**{**small, 'every': 3}), step=step, checkpoint_dir=tmp_path, resume=True)

class TupleNet(nn.Module):
    "Returns (logits, hidden); or an object with .logits."
    def __init__(self, obj=False):
        super().__init__(); self.obj = obj
        torch.manual_seed(0); self.body, self.head = nn.Sequential(nn.Linear(6, 16), nn.ReLU()), nn.Linear(16, 3)
    def forward(self, x):
        h = self.body(x); z = self.head(h)
        return SimpleNamespace(logits=z, hidden=h) if self.obj else (z, h)

def test_tuple_and_logits_outputs_train():
    plain = TupleNet(); plain.forward = lambda x: plain.head(plain.body(x))
    h0 = train(plain, toy_data(), batch=64, epochs=3, quiet=True)
    for obj in (False, True):
        m = TupleNet(obj)
        h = train(m, toy_data(), batch=64, epochs=3, quiet=True, track=Tracker(**small))
        assert torch.equal(vec(m), vec(plain)) and h['train_loss'] == h0['train_loss']   # the same run as the tensor model
        assert h.tracked('lambda_max')[0] == [0, 2, 3]

def test_dict_inputs_refused():
    d = toy_data(); d.Xtr = {'input_ids': d.Xtr}
    with pytest.raises(TypeError, match='data.Xtr is a dict: .*dict batches .* not supported in training'):
        train(toy_model(), d, epochs=1, quiet=True)
    with pytest.raises(TypeError, match="train takes an lbsharp Dataset .* not a tuple"):
        train(toy_model(), (d.Xte, d.Yte), epochs=1, quiet=True)

TINY = dict(trials=1, epochs=2, eps=(1e-3,), p=0, landscape_trials=(), data_kw={'n_samples': 700}, regimes={'SB': 100, 'LB': 280})

def test_experiment_stores_track(tmp_path):
    exp = lbs.preset('quick', **TINY, track=dict(every=1, n_eval=100, probes=2, measures=['lambda_max', 'phi']))
    lbs.run(exp, tmp_path, quiet=True)
    _, runs = load_runs(tmp_path)
    assert [r['regime'] for r in runs] == ['SB', 'LB']
    for r in runs:
        h = History.from_dict(r['history'])
        assert h.tracked('lambda_max')[0] == [0, 1, 2] and h.config['track']['n_eval'] == 100

def test_bad_track_setting_rejected_before_work(tmp_path):
    for t, msg in (({'every': 0}, 'every=0'), ({'n_eval': 10**6}, 'n_eval=1000000 exceeds'), ({'measures': 'lam'}, "unknown \\['lam'\\]")):
        with pytest.raises(ValueError, match=msg): lbs.run(lbs.preset('quick', **TINY, track=t), tmp_path/'out', quiet=True)
        assert not (tmp_path/'out').exists()
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    exe = Path(sys.executable).parent/'lbsharp'      # the console script, as a user runs it
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from lbsharp.cli import main; sys.exit(main())']
    p = subprocess.run(cmd + ['run', 'quick', '--out', str(tmp_path/'cli'), '--set', 'track={"evry": 2}'],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != 0 and "unknown track setting(s) ['evry']" in p.stderr + p.stdout, p.stderr[-500:]
    assert not (tmp_path/'cli').exists()

def test_any_registered_measure_is_tracked():
    "A name of the package's measure registry (here the PAC-Bayes flatness) is tracked through its own entry."
    from lbsharp.measures import MEASURES as REGISTERED
    assert 'pacbayes' in known() and set(TRACKED) < set(known())
    assert all(REGISTERED[k].compute for k in known() if k not in TRACKED)
    h = train(toy_model(), toy_data(), batch=64, epochs=2, quiet=True, track=Tracker(measures=('pacbayes',), **small))
    e, v = h.tracked('pacbayes')
    assert e == [0, 2] and all(x > 0 for x in v)
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"): Tracker(measures=('nope',))
