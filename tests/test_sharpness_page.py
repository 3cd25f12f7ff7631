"""Checks moved out of nbs/03_sharpness.ipynb (the sharpness page) so that the page reads as a tutorial.
Each test is one of the page's former test cells, on the same small data; the page keeps one short
demonstration per concept."""
import warnings
import numpy as np, torch, torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
from fastcore.test import test_eq as eq, test_close as close, test_fail as fails   # aliased: pytest would collect test_*

from lbsharp.box import model_sharpness, box_sharpness, lbfgsb
from lbsharp.subspace import Subspace
from lbsharp.hessian import Hessian, exact_hessian
from lbsharp.contract import train_tensors, trainable_params, data_form, eval_mode
from lbsharp.data import subset_indices
from conftest import toy_mlp, toy_xy, adam_fit


def _quad(h, c, c0=0.3):
    "f(x) = ½ Σ h_i (x_i - c_i)² + c0 as an `fg` closure (the page's quadratic)."
    def fg(x): d = x - c; return float(0.5*(h*d*d).sum() + c0), h*d
    return fg

def _trained():
    "The page's trained tiny network (BatchNorm with batch statistics) and its data (300 samples, 200 Adam steps)."
    X, Y = toy_xy(300, 8, 3)
    return adam_fit(toy_mlp(8, 16, 3, bn='batch'), X, Y, 200), X, Y

_n, _p = 300, 7

def _vectors():
    torch.manual_seed(0)
    return torch.randn(_p), torch.randn(_n), torch.randn(_n)


def test_subspace_streamed_equals_dense_and_bad_input():
    "Streamed blocks and the dense matrix are the same A; seeds differ; bad p, dist fail with the value."
    y, g, x = _vectors()
    s = Subspace(_n, _p, seed=3, dense=False)
    s.rows = 64                                    # several blocks for this small n (the block size is part of A)
    A = torch.cat([b for _, b in s.blocks()])
    close(s.mv(y), A @ y, eps=1e-5)
    close(s.rmv(g), A.T @ g, eps=1e-4)
    close(s.pinv(x), torch.linalg.pinv(A.double()) @ x.double(), eps=1e-10)
    eq(Subspace(_n, _p, seed=3).A, torch.cat([b for _, b in Subspace(_n, _p, seed=3, dense=False).blocks()]))
    assert not torch.equal(Subspace(_n, _p, seed=4).A, Subspace(_n, _p, seed=3).A)
    fails(lambda: Subspace(10, 11), contains='p=11')
    fails(lambda: Subspace(10, 0), contains='p=0')
    fails(lambda: Subspace(10, 2, dist='gauss'), contains="dist='gauss'")
    assert Subspace(_n, _p, dist='uniform').A.min() >= 0


def test_counter_generator():
    "Counter A: independent of block size and `dense`, extended columns, N(0,1)/U(0,1) moments, bad gen fails."
    y, g, x = _vectors()
    c = Subspace(_n, _p, seed=3, gen='counter', dense=False)
    c.counter_rows = 64                                        # several blocks, and a last partial one
    Ac = torch.cat([b for _, b in c.blocks()])
    eq(Ac, Subspace(_n, _p, seed=3, gen='counter').A)
    eq(Subspace(_n, _p + 5, seed=3, gen='counter').A[:, :_p], Ac)
    close(c.mv(y), Ac @ y, eps=1e-5)
    close(c.rmv(g), Ac.T @ g, eps=1e-4)
    close(c.pinv(x), torch.linalg.pinv(Ac.double()) @ x.double(), eps=1e-10)
    assert not torch.equal(Subspace(_n, _p, seed=4, gen='counter').A, Ac)
    big = Subspace(20_000, 50, seed=0, gen='counter').A.double()
    close(big.mean(), 0., eps=0.005); close(big.var(), 1., eps=0.01)
    U = Subspace(20_000, 50, dist='uniform', gen='counter').A
    assert 0 <= U.min() and U.max() < 1; close(U.double().mean(), 0.5, eps=0.003)
    fails(lambda: Subspace(10, 2, gen='cuda'), contains="gen='cuda'")


def test_lbfgsb_fast_and_scipy_paths_run_the_same_iterates():
    "Both L-BFGS-B paths visit the same points on a mixed convex/concave quadratic and stop at `iters`."
    h = torch.linspace(-3, 5, 40, dtype=torch.float64); c = torch.linspace(-1, 1, 40, dtype=torch.float64)**3
    def neg(y): f, g = _quad(h, c)(torch.from_numpy(y)); return -f, -g.numpy()
    runs = []
    for fast in (True, False):
        ys = []
        runs.append((lbfgsb(lambda y: (ys.append(y.copy()), neg(y))[1], np.zeros(40), -np.ones(40)*0.1, np.ones(40)*0.1, 7, fast=fast), ys))
    eq(runs[0][0], runs[1][0])
    eq(runs[0][0][0], 7)
    eq(len(runs[0][1]), len(runs[1][1]))
    eq(np.array(runs[0][1]), np.array(runs[1][1]))


def test_trace_reproduces_shorter_runs():
    "L-BFGS-B does not look at `maxiter` until it stops: phi_at(k) of a long run is the k-iteration run."
    torch.manual_seed(0)
    n = 200
    x = torch.randn(n, dtype=torch.float64)
    c = x + 1e-3*torch.randn(n, dtype=torch.float64)
    fg = _quad(torch.rand(n, dtype=torch.float64)*10 - 3, c)
    long = box_sharpness(fg, x, 1e-3, iters=25, solver='mean')
    for k in (1, 3, 10):
        short = box_sharpness(fg, x, 1e-3, iters=k, solver='mean')
        eq(long.phi_at(k), short.phi)
        eq(long.trace[:short.evaluations], short.trace)


def test_box_sharpness_streamed_subspace_equals_dense():
    "The subspace path through `Subspace` (streamed blocks) and through the same matrix given densely agree."
    torch.manual_seed(11)
    x = torch.randn(15, dtype=torch.float64)
    s = Subspace(15, 3, seed=1, dtype=torch.float64, dense=False)
    s.rows = 4
    fg = _quad(torch.rand(15, dtype=torch.float64) + 0.1, x + 1e-3)
    r1 = box_sharpness(fg, x, 1e-3, A=s, solver='sum')
    r2 = box_sharpness(fg, x, 1e-3, A=torch.cat([a for _, a in s.blocks()]), solver='sum')
    assert r1.phi > 0
    close(r1.phi, r2.phi, eps=1e-9*r1.phi)


def test_train_tensors_every_form():
    "Tensors, a subset, a DataLoader, a shuffling DataLoader (index order, warned), a Dataset; bad forms fail."
    X, Y = torch.randn(6, 3), torch.randint(0, 2, (6,))
    m = nn.Linear(3, 2)
    eq(train_tensors((X, Y), m, subset=4)[0], X[subset_indices(len(X), 4)])
    eq(train_tensors(DataLoader(TensorDataset(X, Y), batch_size=4), m)[1], Y)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        sh = DataLoader(TensorDataset(X, Y), batch_size=4, shuffle=True)
        eq(train_tensors(sh, m)[1], Y)
    assert 'index order' in str(w[0].message)
    eq(data_form(sh), 'a shuffling DataLoader (RandomSampler), re-read once in index order')
    eq(train_tensors(TensorDataset(X, Y), m)[1], Y)
    fails(lambda: train_tensors((X[:0], Y[:0]), m), contains='empty')
    fails(lambda: train_tensors(X, m), contains='(X, Y)')
    fails(lambda: trainable_params(nn.Linear(2, 2).requires_grad_(False)), contains='no trainable')
    eq(eval_mode(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False))),
            'eval (dropout off), BatchNorm with batch statistics')


class Flaky(nn.Module):
    "Wraps a model and raises at the k-th forward call."
    def __init__(self, m, k): super().__init__(); self.m, self.k, self.calls = m, k, 0
    def forward(self, x):
        self.calls += 1
        if self.calls == self.k: raise RuntimeError('boom')
        return self.m(x)

def test_state_restored_after_exception_mid_solve():
    "Weights (the very same tensors), gradients and mode come back after an exception in the middle of the solve."
    m, X, Y = _trained()
    fm = Flaky(m, 7).train()
    for q in fm.parameters(): q.grad = torch.full_like(q, 0.5)
    before = [(q.data_ptr(), q.detach().clone(), q.grad) for q in fm.parameters()]
    fails(lambda: model_sharpness(fm, (X, Y), chunk=100), contains='boom')
    for q, (ptr, v, g) in zip(fm.parameters(), before):
        assert q.data_ptr() == ptr and torch.equal(q.detach(), v) and q.grad is g
    assert fm.training


def test_network_streamed_subspace_equals_dense():
    "Streamed and dense subspaces give the same phi on a network (blocks shrunk so that there are several)."
    m, X, Y = _trained()
    rows = Subspace.rows
    try:
        Subspace.rows = 100
        rs = model_sharpness(m, (X, Y), p=20, dense=False, chunk=100)
        rd = model_sharpness(m, (X, Y), p=20, dense=True, chunk=100)
    finally: Subspace.rows = rows
    close(rs.phi, rd.phi, eps=1e-4*rd.phi)


def test_hessian_methods_against_exact():
    "Every eigenvalue method, the retained graph and bad arguments, against the exact Hessian of a BatchNorm network."
    X, Y = toy_xy(300, 8, 3)
    mb = toy_mlp(8, 6, 3, bn='batch', dtype=torch.float64)
    Xb, Yb = X[:90].double(), Y[:90]
    Hx = exact_hessian(mb, (Xb, Yb), chunk=30)
    Hs = Hessian(mb, (Xb, Yb), chunk=30)
    v = torch.randn(Hs.n, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(Hx).flip(0).numpy()
    w, V = Hs.eigenvalues(3, tol=1e-8, vectors=True)
    close((Hx @ V[:, 0]).norm(), abs(w[0]), eps=1e-6)
    for method in ('lanczos', 'arpack'): close(Hs.eigenvalues(1, method=method)[0], ev[0], eps=1e-4*abs(ev[0]))
    Hr = Hessian(mb, (Xb, Yb), chunk=30, retain=True)
    close(Hr.mv(v), Hx @ v, eps=1e-8*(Hx @ v).norm())
    close(Hr.eigenvalues(2, tol=1e-8), ev[:2], eps=1e-6*abs(ev[0]))
    fails(lambda: Hs.eigenvalues(0), contains='k=0')
    fails(lambda: Hs.trace(1), contains='samples=1')
