"""Both L-BFGS-B paths give the same measurement: SciPy's private `setulb` driven directly (`FAST_LBFGSB`, used only
when its signature matches the one the driver was written for) and the public `scipy.optimize.minimize`."""
import pytest, torch, torch.nn as nn
import importlib
S = importlib.import_module("lbsharp.box")   # the ε-sharpness engine (`lbs.sharpness` is the public function, lbsharp.measure)
from conftest import toy_mlp, adam_fit

def _model_and_data():
    m = toy_mlp(8, 16, 3, act=nn.Tanh, dtype=torch.float64)
    X = torch.randn(200, 8, dtype=torch.float64); Y = torch.randint(0, 3, (200,))   # global stream, after the weights
    return adam_fit(m, X, Y, 200), (X, Y)

@pytest.mark.parametrize('p', [None, 4])
def test_private_and_public_lbfgsb_give_the_same_phi(monkeypatch, p):
    if not S._fast_ok(): pytest.skip(f"this SciPy has no setulb with the expected signature: only the public path runs here")
    m, data = _model_and_data()
    r = {}
    for fast in (True, False):
        monkeypatch.setattr(S, 'FAST_LBFGSB', fast)
        r[fast] = S.model_sharpness(m, data, eps=1e-3, p=p, iters=6)
    assert r[True].iterations == r[False].iterations and r[True].message == r[False].message
    assert [f for _, f in r[True].trace] == [f for _, f in r[False].trace]     # the same iterates, evaluation by evaluation
    assert r[True].phi == r[False].phi > 0

def test_public_path_alone(monkeypatch):
    "What runs on a SciPy without the private driver: a positive phi within the asked iterations."
    monkeypatch.setattr(S, 'FAST_LBFGSB', False)
    m, data = _model_and_data()
    r = S.model_sharpness(m, data, eps=1e-3, p=4, iters=3)
    its = [run['iterations'] for run in r.runs]
    assert max(its) >= 1 and all(i <= 3 for i in its) and r.phi > 0    # every start keeps to the budget
    assert r.lbfgsb == 'minimize'                                             # and the result says which path ran
