"Unit tests of lbsharp.measure: every data form gives the same f, dtypes agree, bad input is refused clearly."
import copy, warnings
import numpy as np, pytest, torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lbsharp.data import Dataset
from lbsharp.hessian import exact_hessian
import importlib
S = importlib.import_module("lbsharp.box")   # the ε-sharpness engine (`lbs.sharpness` is the public function, lbsharp.measure)
from lbsharp.contract import train_tensors
from lbsharp.measure import as_loss, measuring, probe, sharpness, hessian_spectrum, MEASURE_BN
from lbsharp.loss_landscape import landscape
from conftest import toy_mlp, toy_xy, adam_fit


def mlp(): return toy_mlp(5, 12, 3, bn='running', dropout=0.3)   # running statistics and dropout: the modes matter


def convnet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3*4*4, 3))


@pytest.fixture(scope='module')
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(80, 5, generator=g)
    return X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long()


@pytest.fixture(scope='module')
def model(data): return adam_fit(mlp(), *data, 60).train()


def forms(data):
    X, Y = data
    return {'tensors': (X, Y), 'list': [X, Y], 'loader': DataLoader(TensorDataset(X, Y), batch_size=16),
            'loader-odd-batches': DataLoader(TensorDataset(X, Y), batch_size=7), 'torch-dataset': TensorDataset(X, Y),
            'lbsharp-dataset': Dataset('toy', X, Y, X[:8], Y[:8], ['a', 'b', 'c'])}


# --- one reading of the data everywhere -----------------------------------------------------------------

def test_shuffling_loader_reread_in_order_by_core_and_measure(model, data):
    "A shuffling loader is read the same way by the core and by the front door: in index order, with a warning, recorded."
    shuffled = DataLoader(TensorDataset(*data), batch_size=32, shuffle=True)
    with pytest.warns(UserWarning, match='index order'): r0 = S.model_sharpness(model, shuffled, iters=2)
    with pytest.warns(UserWarning, match='index order'): r = sharpness(model, shuffled, iters=2)
    assert r.phi == r0.phi == sharpness(model, data, iters=2).phi
    assert r.data == r0.data == 'a shuffling DataLoader (RandomSampler), re-read once in index order'
    with pytest.warns(UserWarning, match='index order'): h = hessian_spectrum(model, shuffled)
    assert h.data == r.data
    assert sharpness(model, data, iters=2).data == '(X, Y) tensors'


# --- one f, whatever the form ---------------------------------------------------------------------------

@pytest.mark.parametrize('form', ['list', 'loader', 'loader-odd-batches', 'torch-dataset', 'lbsharp-dataset'])
def test_tensor_and_other_forms_identical(model, data, form):
    d = forms(data)[form]
    for kw in (dict(), dict(p=10), dict(adaptive=True), dict(bn='batch')):
        a, b = sharpness(model, data, iters=3, **kw), sharpness(model, d, iters=3, **kw)
        assert (a.phi, a.f0, a.fmax, a.evaluations) == (b.phi, b.f0, b.fmax, b.evaluations), kw
    assert hessian_spectrum(model, data, k=2).eigenvalues == hessian_spectrum(model, d, k=2).eigenvalues
    la = landscape(model, data, coords=np.linspace(-1, 1, 5), quiet=True)
    lb = landscape(model, d, coords=np.linspace(-1, 1, 5), quiet=True)
    assert la['train'] == lb['train']


def test_float32_and_float64_agree(model, data):
    m64 = copy.deepcopy(model).double()
    loader = DataLoader(TensorDataset(*data), batch_size=16)
    a, b = sharpness(model, loader, iters=3), sharpness(m64, loader, iters=3)
    assert abs(a.f0 - b.f0) < 1e-5 and abs(a.phi - b.phi) < 1e-2*max(1, a.phi)
    ha, hb = hessian_spectrum(model, data, k=2, tol=1e-5), hessian_spectrum(m64, data, k=2, tol=1e-5)
    np.testing.assert_allclose(ha.eigenvalues, hb.eigenvalues, rtol=1e-3)
    la = landscape(model, loader, coords=np.linspace(-1, 1, 5), quiet=True)
    lb = landscape(m64, loader, coords=np.linspace(-1, 1, 5), quiet=True)
    np.testing.assert_allclose(la['train']['loss'], lb['train']['loss'], rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_cuda_follows_model(model, data):
    mc = copy.deepcopy(model).cuda()
    a, b = sharpness(model, data, iters=2), sharpness(mc, DataLoader(TensorDataset(*data), batch_size=16), iters=2)
    assert abs(a.f0 - b.f0) < 1e-4
    assert abs(hessian_spectrum(model, data).top - hessian_spectrum(mc, data).top) < 1e-3*hessian_spectrum(model, data).top


# --- modes, restoration, determinism --------------------------------------------------------------------

@pytest.mark.parametrize('bn', list(MEASURE_BN))
def test_mode_recorded_and_model_restored(model, data, bn):
    before = copy.deepcopy(model.state_dict())
    r = sharpness(model, data, iters=2, bn=bn)
    s = hessian_spectrum(model, data, bn=bn)
    l = landscape(model, data, coords=[-0.5, 0, 0.5], bn=bn, quiet=True)
    for mode in (r.mode, s.mode, l['settings']['mode']): assert mode.startswith('eval (dropout off)')
    assert ('batch statistics' in r.mode) == (bn == 'batch') and ('re-estimated' in r.mode) == (bn == 'recompute')
    assert model.training
    for k, v in model.state_dict().items(): assert torch.equal(v, before[k]), k
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm1d))


def test_bn_batch_equals_network_built_without_running_stats(model, data):
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, nn.BatchNorm1d): m.track_running_stats, m.running_mean, m.running_var = False, None, None
    assert sharpness(model, data, iters=3, bn='batch').phi == sharpness(twin, data, iters=3).phi


class Noisy(nn.Module):
    def __init__(self): super().__init__(); self.lin = nn.Linear(5, 3)
    def forward(self, x): return self.lin(F.dropout(x, 0.5, training=True))


def test_determinism_probe(data):
    with pytest.warns(UserWarning, match='differs between two evaluations'): sharpness(Noisy(), data, iters=1)
    with pytest.warns(UserWarning, match='differs between two evaluations'): landscape(Noisy(), data, coords=[0.], quiet=True)
    with pytest.raises(ValueError, match='not deterministic'): hessian_spectrum(Noisy(), data)
    with warnings.catch_warnings():
        warnings.simplefilter('error'); assert probe(mlp(), *data) == 0


# --- any loss --------------------------------------------------------------------------------------------

def test_any_loss(model, data):
    ce = sharpness(model, data, iters=3)
    for fn in (nn.CrossEntropyLoss(), nn.CrossEntropyLoss(reduction='sum'), lambda o, y: F.cross_entropy(o, y)):
        r = sharpness(model, data, iters=3, loss_fn=fn)
        assert abs(r.f0 - ce.f0) < 1e-6 and abs(r.phi - ce.phi) < 1e-3*max(1, ce.phi)
    smooth = sharpness(model, data, iters=3, loss_fn=nn.CrossEntropyLoss(label_smoothing=0.2))
    assert smooth.loss == 'CrossEntropyLoss' and smooth.f0 > ce.f0
    l1 = landscape(model, data, coords=np.linspace(-1, 1, 5), quiet=True)
    l2 = landscape(model, data, coords=np.linspace(-1, 1, 5), loss_fn=nn.CrossEntropyLoss(), quiet=True)
    np.testing.assert_allclose(l1['train']['loss'], l2['train']['loss'], rtol=1e-6)
    assert l1['train']['acc'] == l2['train']['acc']
    p1 = landscape(model, data, dims=2, coords=[-1, 0, 1], quiet=True)
    p2 = landscape(model, data, dims=2, coords=[-1, 0, 1], loss_fn=nn.CrossEntropyLoss(), quiet=True)
    np.testing.assert_allclose(p1['train']['loss'], p2['train']['loss'], rtol=1e-6)


# --- curvature on convolutions (double backward gives non-contiguous gradients) ---------------------------

def test_hessian_of_a_convnet_matches_dense():
    X, Y = toy_xy(24, (1, 6, 6), 3, seed=1)
    net = convnet()
    sp = hessian_spectrum(net, DataLoader(TensorDataset(X, Y), batch_size=5), k=2, tol=1e-6, trace=300)
    ev = torch.linalg.eigvalsh(exact_hessian(net, (X, Y)).double()).flip(0)
    np.testing.assert_allclose(sp.eigenvalues, ev[:2].numpy(), rtol=1e-4)
    assert abs(sp.trace - float(ev.sum())) < 4*sp.trace_se + 1e-6


# --- bad input -------------------------------------------------------------------------------------------

class DictData(torch.utils.data.Dataset):
    def __len__(self): return 4
    def __getitem__(self, i): return {'x': torch.zeros(5), 'y': 0}


ENTRY = {'sharpness': lambda m, d, **kw: sharpness(m, d, iters=1, **kw),
         'hessian_spectrum': lambda m, d, **kw: hessian_spectrum(m, d, **kw),
         'landscape': lambda m, d, **kw: landscape(m, d, coords=[0.], quiet=True, **kw)}


@pytest.mark.parametrize('entry', list(ENTRY))
def test_bad_input_clear_errors(model, data, entry):
    call, X, Y = ENTRY[entry], *data
    with pytest.raises(TypeError, match=r'expected \(inputs, labels\) pairs'): call(model, DataLoader(DictData()))
    with pytest.raises(TypeError, match=r'expected an \(inputs, labels\) pair'): call(model, DataLoader(TensorDataset(X)))
    with pytest.raises(ValueError, match='yields no batches'): call(model, DataLoader(TensorDataset(X[:0], Y[:0])))
    with pytest.raises(ValueError, match='yields no batches'): call(model, DataLoader(TensorDataset(X[:3], Y[:3]), batch_size=4, drop_last=True))
    with pytest.raises(ValueError, match='no trainable parameters'): call(copy.deepcopy(model).requires_grad_(False), data)
    with pytest.raises(ValueError, match='expected a scalar tensor'): call(model, data, loss_fn=nn.CrossEntropyLoss(reduction='none'))
    with pytest.raises(TypeError, match=r'pass \(X, Y\)'): call(model, X)
    with pytest.raises(ValueError, match='unknown'): call(model, data, bn='train')
    assert model.training


def test_random_transforms_warned(data):
    class Augmented(TensorDataset):
        def __getitem__(self, i): x, y = super().__getitem__(i); return x + 0.1*torch.randn_like(x), y
    with pytest.warns(UserWarning, match='random transforms'): train_tensors(Augmented(*data), mlp())


def test_as_loss_non_tensor():
    with pytest.raises(ValueError, match='expected a scalar tensor'): as_loss(lambda o, y: 1.0)(torch.zeros(2, 3), torch.zeros(2).long())
