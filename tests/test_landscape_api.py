"""Landscape checks on the library's own networks (the notebook tests use hand-built tiny models)."""
import numpy as np, pytest, torch
from lbsharp.networks import build
from lbsharp.evaluation import evaluate
from lbsharp.loss_landscape import parametric, scan, random_direction, plot_line
from lbsharp.measure import preserved
from conftest import toy_dataset

def _data(): return toy_dataset(202, 64, labels='random')   # MNIST-1D-shaped: 40 features, 10 classes

def _state(m): return {k: v.clone() for k, v in m.state_dict().items()}, [x.training for x in m.modules()]

@pytest.mark.parametrize('bn', ['batch', 'running', 'none'])
@pytest.mark.parametrize('path', ['linear', 'curvilinear'])
def test_endpoints_exact_and_model_restored(bn, path):
    d = _data()
    sb, lb = build('mlp-mnist1d', bn=bn, seed=0, width=32), build('mlp-mnist1d', bn=bn, seed=1, width=32)
    if bn == 'running':  # distinct running statistics, as after training
        for m, s in ((sb, 1.), (lb, 3.)):
            m.train()
            with torch.no_grad(): m(s*d.Xtr)
    sb.train()
    st, modes = _state(sb)
    ptrs = [p.data_ptr() for p in sb.parameters()]
    ref = {k: (evaluate(m, d.Xtr, d.Ytr, chunk=100), evaluate(m, d.Xte, d.Yte, chunk=100)) for k, m in (('sb', sb), ('lb', lb))}
    r = parametric(sb, lb, d, path=path, chunk=100, quiet=True)  # default grid: linspace(-1, 2, 25)
    x = np.array(r['x']); i0, i1 = int(np.flatnonzero(x == 0)[0]), int(np.flatnonzero(x == 1)[0])
    for i, k in ((i0, 'sb'), (i1, 'lb')):
        assert r['train']['loss'][i] == ref[k][0].loss and r['test']['loss'][i] == ref[k][1].loss
        assert r['train']['acc'][i] == ref[k][0].acc and r['test']['acc'][i] == ref[k][1].acc
    st2, modes2 = _state(sb)
    assert modes2 == modes and all(torch.equal(st[k], st2[k]) for k in st)
    assert [p.data_ptr() for p in sb.parameters()] == ptrs
    fig = plot_line(r)
    assert len(fig.axes) == 2 and fig.axes[0].get_ylabel() == 'Cross-entropy' and fig.axes[1].get_ylabel() == 'Accuracy (%)'

def test_errors():
    d = _data()
    a, b = build('mlp-mnist1d', seed=0), build('mlp-digits', seed=0)
    with pytest.raises(ValueError, match='same architecture'): parametric(a, b, d)
    with pytest.raises(ValueError, match='alphas is empty'): parametric(a, build('mlp-mnist1d', seed=1), d, alphas=[])
    with pytest.raises(ValueError, match='parameters'): scan(a, d, torch.zeros(3))

def test_scan_centre_and_restore():
    d, m = _data(), build('mlp-mnist1d', bn='running', seed=0, width=32)
    st, modes = _state(m)
    r = scan(m, d, random_direction(m, seed=1), random_direction(m, seed=2), coords=[-1, 0, 1], chunk=100, quiet=True)
    assert r['train']['loss'][1][1] == evaluate(m, d.Xtr, d.Ytr, chunk=100).loss
    st2, modes2 = _state(m)
    assert modes2 == modes and all(torch.equal(st[k], st2[k]) for k in st)
