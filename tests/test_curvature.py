"Cross-library checks of `lbsharp.curvature` against curvlinops (a test-only oracle), plus the result objects' round trips."
import math, numpy as np, pytest, torch, torch.nn as nn, torch.nn.functional as F
from lbsharp.networks import build
from lbsharp.hessian import Hessian
from lbsharp.curvature import Matrix, SpectralDensity, spectral_density, hutchpp
from lbsharp.estimators import TraceEstimate, hutchinson, rademacher

curvlinops = pytest.importorskip('curvlinops')
from scipy.sparse.linalg import eigsh
from conftest import toy_xy

def _data(): return toy_xy(300, 40, 10)   # MNIST-1D-shaped: 40 features, 10 classes

def _dropout_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 12), nn.Tanh(), nn.Dropout(0.3), nn.Linear(12, 10))

# curvlinops 3.0.1 is the oracle where it is right: without BatchNorm in batch mode (see the last tests for why).
NETS = {'no-batchnorm': lambda: build('mlp-mnist1d', width=8, depth=2, bn='none', seed=0),
        'dropout-eval-mode': _dropout_net}
CHUNK = 100  # three chunks: with BatchNorm in batch mode each chunk normalises with its own statistics

@pytest.fixture(scope='module', params=list(NETS))
def pair(request):
    "Our `Hessian` and curvlinops' `HessianLinearOperator` of the same f (mean loss over the same chunks)."
    model = NETS[request.param]()
    X, Y = _data()
    H = Hessian(model, (X, Y), chunk=CHUNK, retain=True)
    model.eval()  # dropout off, as `evaluate` runs it; BatchStatNorm keeps batch statistics in eval mode
    params = [p for p in model.parameters() if p.requires_grad]
    chunks = [(X[i:i+CHUNK], Y[i:i+CHUNK]) for i in range(0, len(X), CHUNK)]
    C = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(reduction='mean'), params, chunks)
    return H, C

def _rel(a, b): return float((a - b).norm()/b.norm())

def test_products_match_curvlinops(pair):
    H, C = pair
    V = torch.randn(H.n, 5, generator=torch.Generator().manual_seed(1))
    ref = C @ V
    assert _rel(H.mm(V), ref) < 1e-5
    assert _rel(H.mm(V, fresh=True), ref) < 1e-5
    assert _rel(H.mm(V, batched=True), ref) < 1e-5
    assert _rel(H.mv(V[:, 2]), ref[:, 2]) < 1e-5

def test_top_eigenvalues_match_curvlinops(pair):
    H, C = pair
    ref = np.sort(eigsh(C.to_scipy(), k=3, which='LA', tol=1e-8)[0])[::-1]
    ours = H.eigenvalues(3, tol=1e-7, max_products=H.n)
    np.testing.assert_allclose(ours, ref, rtol=1e-4)

def test_trace_matches_curvlinops(pair):
    H, C = pair
    dense = C @ torch.eye(C.shape[1])
    exact = float(torch.diagonal(dense).sum())
    G = rademacher(H.n, 40, seed=3, op=H)
    h = hutchinson(H, 40, seed=3)   # the same probes: the same estimate as curvlinops' products give
    np.testing.assert_allclose(h.estimate, float((G*(C @ G)).sum(0).mean()), rtol=1e-5, atol=1e-6)
    hp = hutchpp(H, 60, seed=0)
    assert abs(hp.estimate - exact) <= 4*hp.stderr + 1e-6*abs(exact)
    full = hutchpp(H, H.n + 2, sketch=H.n//2)   # products enough for a near-exact answer
    assert abs(full.estimate - exact) <= 4*full.stderr + 1e-4*abs(exact)

def test_spectral_density_moments_match_curvlinops(pair):
    "SLQ moments against tr(H)/n and tr(H²)/n of curvlinops' dense Hessian, within 4 standard errors."
    H, C = pair
    dense = (C @ torch.eye(C.shape[1])).double()
    ev = np.linalg.eigvalsh(((dense + dense.T)/2).numpy())
    sd = spectral_density(H, steps=30, vectors=16, quiet=True)
    for j in (1, 2):
        est, se = sd.moment(j, se=True)
        assert abs(est - np.mean(ev**j)) <= 4*se + 1e-9, (j, est, np.mean(ev**j), se)
    np.testing.assert_allclose(sd.range[1], ev[-1], rtol=1e-4)

def test_spectral_density_round_trip_and_errors():
    lam = torch.linspace(0, 1, 40, dtype=torch.float64)
    sd = spectral_density(Matrix(torch.diag(lam)), steps=40, vectors=3, quiet=True)
    back = SpectralDensity.from_dict(sd.to_dict())
    np.testing.assert_array_equal(back.nodes, sd.nodes)
    assert back.moment(2) == sd.moment(2)
    np.testing.assert_allclose(sd.moment(1), float(lam.mean()), rtol=1e-12)   # Rademacher vectors: vᵀDv/n = mean(λ)
    with pytest.raises(ValueError, match='vectors=0'): spectral_density(Matrix(torch.eye(3)), vectors=0)
    with pytest.raises(ValueError, match='steps=5'): spectral_density(Matrix(torch.eye(3)), steps=5, vectors=2)
    t = hutchinson(Matrix(torch.eye(4, dtype=torch.float64)), 4)
    assert t.estimate == 4 and t.stderr == 0 and TraceEstimate(**t.to_dict()).estimate == 4

def _bn_model():
    return build('mlp-mnist1d', width=8, depth=2, bn='batch', seed=0).double()

def _fd_products(model, X, Y, V, chunk, h=1e-6):
    "Central differences of the float64 gradient of f (same chunks): an oracle independent of double backward."
    from torch.func import functional_call, grad
    names = [k for k, _ in model.named_parameters()]; ps = [q.detach() for q in model.parameters()]
    sizes = [q.numel() for q in ps]
    def f(flat):
        d = {k: t.view_as(q) for k, t, q in zip(names, flat.split(sizes), ps)}
        return sum(F.cross_entropy(functional_call(model, d, (X[i:i+chunk],)), Y[i:i+chunk], reduction='sum')
                   for i in range(0, len(X), chunk))/len(X)
    x0 = torch.cat([q.reshape(-1) for q in ps]); gf = grad(f)
    model.eval()
    return torch.stack([(gf(x0 + h*v) - gf(x0 - h*v))/(2*h) for v in V.T], 1)

def test_products_with_batchnorm_in_batch_mode_match_finite_differences():
    "BatchNorm in batch mode (per-chunk statistics define f): products against finite differences in float64."
    model = _bn_model(); X, Y = _data(); X = X.double()
    H = Hessian(model, (X, Y), chunk=CHUNK, retain=True)
    V = torch.randn(H.n, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = _fd_products(model, X, Y, V, CHUNK)
    assert _rel(H.mm(V), ref) < 1e-6
    assert _rel(H.mm(V, fresh=True, batched=True), ref) < 1e-6

@pytest.mark.xfail(strict=False, reason="curvlinops 3.0.1's Hessian products differ from finite differences by several "
                   "percent on networks with BatchNorm using batch statistics (nn.BatchNorm1d(track_running_stats=False)); "
                   "found while using it as an oracle. Passes once curvlinops is fixed.")
def test_curvlinops_with_batchnorm_in_batch_mode():
    model = _bn_model(); X, Y = _data(); X = X.double()
    V = torch.randn(sum(q.numel() for q in model.parameters()), 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = _fd_products(model, X, Y, V, len(X))
    model.eval()
    C = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, Y)])
    assert _rel(C @ V, ref) < 1e-6
