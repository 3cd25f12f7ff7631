"Unit tests of lbsharp.box beyond the notebook's: solver paths, data paths, restoration, variants."
import math, warnings
import numpy as np, pytest, torch
from torch.nn.utils import parameters_to_vector

import importlib
S = importlib.import_module("lbsharp.box")   # the ε-sharpness engine (`lbs.sharpness` is the public function, lbsharp.measure)
from lbsharp.box import model_sharpness, box_sharpness, box_bounds, lbfgsb
from lbsharp.subspace import Subspace
from lbsharp.hessian import Hessian, exact_hessian
from conftest import toy_mlp, toy_xy, adam_fit


@pytest.fixture(scope='module')
def data(): return toy_xy(120, 5, 3)


@pytest.fixture(scope='module')
def model(data): return adam_fit(toy_mlp(bn='batch'), *data, 100)


def quad(h, c, c0=0.3):
    def fg(x): d = x - c; return float(0.5*(h*d*d).sum() + c0), h*d
    return fg


@pytest.mark.parametrize('solver', list(S.SOLVERS))
def test_fast_driver_equals_scipy_minimize(monkeypatch, solver):
    if not S._fast_ok(): pytest.skip("this SciPy lacks the setulb signature the fast driver needs: only minimize runs here")
    torch.manual_seed(1)
    n = 60
    x = torch.randn(n, dtype=torch.float64); h = torch.randn(n, dtype=torch.float64)*3; c = x + 1e-2*torch.randn(n, dtype=torch.float64)
    runs = []
    for fast in (True, False):
        monkeypatch.setattr(S, 'FAST_LBFGSB', fast)
        runs.append(box_sharpness(quad(h, c), x, 1e-2, iters=8, solver=solver, n_data=50))
    assert runs[0].trace == runs[1].trace and runs[0].iterations == runs[1].iterations
    assert torch.equal(runs[0].y, runs[1].y)


def test_full_space_bowl_reaches_every_corner():
    torch.manual_seed(2)
    x = torch.randn(500, dtype=torch.float64)
    r = box_sharpness(quad(torch.rand(500, dtype=torch.float64) + .5, x - 1e-4), x, 1e-3)
    b = box_bounds(x, 1e-3)
    assert r.at_bound == 1.0
    assert torch.allclose(r.y, b*torch.sign(torch.full_like(x, 1e-4)), rtol=1e-12, atol=0)


def test_phi_at_equals_shorter_runs(model, data):
    long = model_sharpness(model, data, iters=12, solver='mean')
    for k in (1, 4, 8):
        short = model_sharpness(model, data, iters=k, solver='mean')
        assert long.trace[:short.evaluations] == short.trace
        assert long.phi_at(k) == short.phi


def test_tensors_dataset_and_loader_agree(model, data):
    X, Y = data
    r1 = model_sharpness(model, (X, Y), chunk=40)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=7, shuffle=False)
    r2 = model_sharpness(model, dl, chunk=40)
    class D: pass
    d = D(); d.Xtr, d.Ytr = X, Y
    r3 = model_sharpness(model, d, chunk=40)
    assert r1.phi == r2.phi == r3.phi and r1.n_samples == 120


def test_float64_copy_agrees(model, data):
    m64 = toy_mlp(bn='batch', dtype=torch.float64)
    m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    r32, r64 = model_sharpness(model, data, iters=5, solver='sign'), model_sharpness(m64, data, iters=5, solver='sign')
    assert math.isclose(r32.f0, r64.f0, rel_tol=1e-5)
    assert math.isclose(r32.phi, r64.phi, rel_tol=2e-2)


def test_weights_grads_buffers_mode_restored(data):
    m = toy_mlp(bn='running').train()              # BN with running statistics, left in train mode
    for p in m.parameters(): p.grad = torch.ones_like(p)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ptrs = [p.data_ptr() for p in m.parameters()]
    grads = [p.grad for p in m.parameters()]
    r = model_sharpness(m, data, p=4)
    assert m.training and 'running statistics' in r.mode
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k]), k     # includes BN running stats
    assert [p.data_ptr() for p in m.parameters()] == ptrs
    assert all(p.grad is g for p, g in zip(m.parameters(), grads))


def test_frozen_parameters_are_not_part_of_x(data):
    m = toy_mlp()
    m[0].requires_grad_(False)
    r = model_sharpness(m, data, iters=2)
    assert r.n_params == sum(p.numel() for p in m[2].parameters())


def test_sign_start_and_variant_denominator(model, data):
    r = model_sharpness(model, data, solver='sign', iters=3, f_init=math.log(3))
    assert r.trace[0][0] == 0 and r.evaluations >= 2       # the y = 0 evaluation is counted
    assert math.isclose(r.phi_init, 100*(r.fmax - r.f0)/(math.log(3) - r.f0))


def test_stall_stops_wasted_line_search(model, data):
    r = model_sharpness(model, data, solver='sum', iters=50)
    assert r.evaluations <= r.iterations + 2 + 40        # never the 20+20 line-search failures of plain SciPy at float32 noise


def test_adaptive_is_invariant_under_relu_rescaling(data):
    m = adam_fit(toy_mlp(), *data, 60)
    m2 = toy_mlp(); m2.load_state_dict(m.state_dict())
    with torch.no_grad(): m2[0].weight.mul_(10); m2[0].bias.mul_(10); m2[2].weight.div_(10)
    assert torch.allclose(m(data[0]), m2(data[0]), atol=1e-5)
    a, b = model_sharpness(m, data, adaptive=True), model_sharpness(m2, data, adaptive=True)
    assert math.isclose(a.phi, b.phi, rel_tol=1e-2)
    assert model_sharpness(m2, data).phi > 2*model_sharpness(m, data).phi   # the paper's box is not invariant


def test_hessian_leaves_grads_and_matches_exact(data):
    m = toy_mlp(width=4, bn='batch', dtype=torch.float64)
    X, Y = data[0].double(), data[1]
    for p in m.parameters(): p.grad = torch.zeros_like(p)
    grads = [p.grad for p in m.parameters()]
    H = Hessian(m, (X, Y), chunk=50)
    Hx = exact_hessian(m, (X, Y), chunk=50)
    v = torch.randn(H.n, dtype=torch.float64)
    assert torch.allclose(H.mv(v), Hx @ v, rtol=1e-4, atol=1e-10*float((Hx @ v).norm()))
    assert all(p.grad is g for p, g in zip(m.parameters(), grads))
    assert np.allclose(H.eigenvalues(2, tol=1e-10), torch.linalg.eigvalsh(Hx).flip(0)[:2].numpy(), rtol=1e-4)


def test_subspace_uniform_is_recorded(model, data):
    r = model_sharpness(model, data, p=3, dist='uniform', seed=7, iters=2)
    assert (r.space, r.p, r.dist, r.seed) == ('subspace', 3, 'uniform', 7)
    assert Subspace(10, 3, dist='uniform').A.min() >= 0


@pytest.mark.parametrize('kw,msg', [(dict(eps=0), 'eps=0'), (dict(eps=-1e-3), 'eps=-0.001'), (dict(p=0), 'p=0'), (dict(p=10**7), 'p=10000000'),
                                    (dict(iters=0), 'iters=0'), (dict(solver='x'), "solver='x'"), (dict(subset=0), 'subset=0')])
def test_bad_input(model, data, kw, msg):
    with pytest.raises((ValueError, TypeError), match=msg.replace('(', r'\(')): model_sharpness(model, data, **kw)


def test_empty_and_bad_data(model, data):
    with pytest.raises(ValueError, match='empty'): model_sharpness(model, (data[0][:0], data[1][:0]))
    with pytest.raises(TypeError, match=r'\(X, Y\)'): model_sharpness(model, data[0])
    with pytest.raises(ValueError, match='no trainable'): model_sharpness(toy_mlp(bn='batch').requires_grad_(False), data)
