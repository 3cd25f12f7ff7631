"""The controlled interventions of the gap experiment (`lbsharp.hooks`): what each one does to a step, checked where the answer
is known. SAM's perturbation has norm ρ; the gradient-norm penalty's step is the analytic gradient of f + λ‖∇f‖; injected noise
has the stated covariance (isotropic for noise-iso, ∝ the per-sample gradient covariance for noise-sb) and the stated trace;
runs with each intervention resume exactly."""
import math
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from lbsharp.training import train, init_model
from lbsharp.hooks import SAM, GradNorm, _flat_grad
from lbsharp.noise import NoiseIso, NoiseSB, noise_scale, _c
from lbsharp.remedies import train_kwargs, remedy_options, REMEDIES
from conftest import toy_mlp, toy_xy

torch.set_default_dtype(torch.float32)

def _vec(m): return parameters_to_vector(m.parameters()).detach().clone()

def _mlp(): return toy_mlp(5, 16, 3, act=nn.Tanh, dtype=torch.float64)

@pytest.fixture(scope='module')
def batch(): return toy_xy(64, 5, 3, seed=1, dtype=torch.float64)

# ---------------------------------------------------------------- SAM / ASAM
@pytest.mark.parametrize('rho', [0.01, 0.05, 0.5])
def test_sam_perturbation_has_norm_rho(batch, rho):
    xb, yb = batch
    m = _mlp(); F.cross_entropy(m(xb), yb).backward()
    e = SAM(rho).perturbation(list(m.parameters()))
    assert math.isclose(float(e.norm()), rho, rel_tol=1e-10)
    g = _flat_grad(list(m.parameters()))
    assert math.isclose(float(e @ g), rho*float(g.norm()), rel_tol=1e-10)       # along the gradient

@pytest.mark.parametrize('rho', [0.05, 0.5])
def test_asam_perturbation_has_norm_rho_in_the_scaled_ball(batch, rho):
    xb, yb = batch
    m = _mlp(); F.cross_entropy(m(xb), yb).backward()
    st = SAM(rho, adaptive=True, eta=0.01)
    e = st.perturbation(list(m.parameters()))
    t = _vec(m).abs() + 0.01
    assert math.isclose(float((e/t).norm()), rho, rel_tol=1e-10)                 # ‖T⁻¹e‖ = ρ

# ---------------------------------------------------------------- gradient-norm penalty
class _Quad(nn.Module):
    def __init__(self, x): super().__init__(); self.x = nn.Parameter(x.clone())
    def forward(self, xb): return self.x[None].expand(len(xb), -1)

@pytest.mark.parametrize('lam,r', [(0.3, 0.1), (0.04, 0.05), (1., 1e-3)])
def test_grad_norm_step_is_the_penalised_gradient_on_a_quadratic(lam, r):
    g = torch.Generator().manual_seed(0)
    Q = torch.randn(8, 8, generator=g, dtype=torch.float64); A = Q @ Q.T + 0.1*torch.eye(8, dtype=torch.float64)
    b, x = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    loss = lambda out, y: 0.5*out[0] @ A @ out[0] - b @ out[0]
    m = _Quad(x); st = GradNorm(lam, r, loss_fn=loss)
    st(m, torch.optim.SGD(m.parameters(), lr=0.01), torch.zeros(1, 1), None)
    gx = A @ x - b
    torch.testing.assert_close(m.x.detach(), x - 0.01*(gx + lam*A @ gx/gx.norm()), rtol=0, atol=1e-12)
    assert math.isclose(st.last['grad_norm'], float(gx.norm()), rel_tol=1e-12)

def test_grad_norm_matches_double_backprop_to_first_order_in_r(batch):
    "Softmax regression + tanh MLP: the finite-difference step converges (error O(r)) to double backprop's gradient of f + λ‖∇f‖."
    xb, yb = batch
    m0 = _mlp(); x0 = _vec(m0); lam = 0.1
    params = list(m0.parameters())
    L = F.cross_entropy(m0(xb), yb)
    gs = torch.autograd.grad(L, params, create_graph=True)
    pen = L + lam*torch.sqrt(sum((q**2).sum() for q in gs))
    want = parameters_to_vector(torch.autograd.grad(pen, params))
    errs = []
    for r in (1e-2, 1e-3, 1e-4):
        m = _mlp(); GradNorm(lam, r)(m, torch.optim.SGD(m.parameters(), lr=1.), xb, yb)
        errs.append(float(((x0 - _vec(m)) - want).norm()/want.norm()))
    assert errs[-1] < 1e-4 and errs[0] > 5*errs[1] > 25*errs[2], errs   # first order: 10× smaller r, ~10× smaller error

def test_grad_norm_with_lam_r_is_sam(batch):
    xb, yb = batch
    m1, m2 = _mlp(), _mlp()
    GradNorm(0.05, 0.05)(m1, torch.optim.SGD(m1.parameters(), lr=0.1), xb, yb)
    SAM(0.05)(m2, torch.optim.SGD(m2.parameters(), lr=0.1), xb, yb)
    torch.testing.assert_close(_vec(m1), _vec(m2), rtol=0, atol=1e-12)

def test_grad_norm_errors():
    with pytest.raises(ValueError, match='lam=-1'): GradNorm(lam=-1)
    with pytest.raises(ValueError, match='r=0'): GradNorm(r=0)

# ---------------------------------------------------------------- noise on a least-squares model
def _lin(out, y, reduction='mean'): return (0.5*(out[:, 0] - y)**2).sum()/(1 if reduction == 'sum' else len(y))

@pytest.fixture(scope='module')
def lsq():
    "A least-squares model with exact per-sample gradients a_i(wᵀa_i − y_i) and their covariance Σ (divisor N)."
    g = torch.Generator().manual_seed(0)
    N, d = 2000, 4
    X = torch.randn(N, d, generator=g, dtype=torch.float64)*torch.tensor([3., 1., .5, .2], dtype=torch.float64)
    Y = X @ torch.tensor([1., -2., .5, 0.], dtype=torch.float64) + torch.randn(N, generator=g, dtype=torch.float64)
    torch.manual_seed(0); m = nn.Linear(d, 1, bias=False).double()
    ps = X*(m(X)[:, 0] - Y).detach()[:, None]
    return dict(X=X, Y=Y, m=m, ps=ps, Sig=torch.cov(ps.T, correction=0), N=N, d=d)

def test_noise_iso_trace_estimate_is_the_exact_per_sample_trace(lsq):
    """tr Σ from noise_scale (2,000 batches of 16), 10 estimates: their mean is the exact tr Σ within 5 of their standard errors.
    (The per-sample gradients are heavy-tailed, so one estimate scatters by ~10 %, not the Gaussian √(2/2000) = 3 %.)"""
    torch.manual_seed(0)
    ni = NoiseIso(lsq['X'], lsq['Y'], sb_batch=16, n_batches=2000, loss_fn=_lin)
    est = torch.tensor([ni.estimate(lsq['m']) for _ in range(10)], dtype=torch.float64)
    tr = lsq['Sig'].trace().item()
    assert len({round(e, 6) for e in est.tolist()}) == 10                    # each estimate draws its own batches
    assert abs(est.mean().item() - tr) < 5*est.std().item()/math.sqrt(10), (est.tolist(), tr)
    assert est.std().item() < 0.2*tr

def test_noise_iso_covariance_is_isotropic_with_the_stated_trace(lsq):
    "K = 40,000 draws: diagonal entries of the empirical covariance have relative sd √(2/K) = 0.7 %, off-diagonal σ²/√K; 5 sd allowed."
    torch.manual_seed(1)
    ni = NoiseIso(lsq['X'], lsq['Y'], sb_batch=16, loss_fn=_lin); ni.trace_S = lsq['Sig'].trace().item()
    K, d, B = 40000, lsq['d'], 400
    xi = torch.stack([ni.noise(d, B, lsq['ps']) for _ in range(K)])
    target = ni.trace_S*(_c(lsq['N'], 16) - _c(lsq['N'], B))
    assert math.isclose(ni.target(B), target, rel_tol=1e-12)
    assert math.isclose(target, ni.trace_S*lsq['N']/(lsq['N'] - 1)*(1/16 - 1/B), rel_tol=1e-12)   # the finite-population form
    C, s2 = torch.cov(xi.T, correction=0), target/d
    torch.testing.assert_close(C.diagonal()/s2, torch.ones(d, dtype=torch.float64), rtol=0, atol=5*math.sqrt(2/K))
    assert (C - torch.diag(C.diagonal())).abs().max() < 5*s2/math.sqrt(K)
    sq = xi.pow(2).sum(1)                                              # E‖ξ‖² = target; ‖ξ‖²/σ² ~ χ²_d
    assert abs(sq.mean().item() - target) < 5*target*math.sqrt(2/d)/math.sqrt(K)
    assert ni.target(16) == 0. and ni.target(8) == 0.                  # no smaller "SB" than the batch: no noise

def test_noise_iso_hook_adds_the_noise_and_reestimates_on_schedule(lsq):
    "With SGD at rate 1 the step is x − (g + ξ); tr Σ is estimated at the first step and then every `every` epochs."
    X, Y = lsq['X'], lsq['Y']
    for every, n_est in ((1, 3), (2, 2), (None, 1)):
        torch.manual_seed(0)
        m = nn.Linear(4, 1, bias=False).double(); m.load_state_dict(lsq['m'].state_dict())
        ni = NoiseIso(X, Y, sb_batch=16, every=every, loss_fn=_lin)
        opt = torch.optim.SGD(m.parameters(), lr=0.)                  # rate 0: the same point at every call
        for k in range(11): ni(m, opt, X[(k % 5)*400:(k % 5 + 1)*400], Y[(k % 5)*400:(k % 5 + 1)*400])  # 5 steps per epoch
        assert [e['update'] for e in ni.estimates] == [0, 5, 10][::every or 99][:n_est], (every, ni.estimates)
    m = nn.Linear(4, 1, bias=False).double(); m.load_state_dict(lsq['m'].state_dict()); x0 = _vec(m)
    torch.manual_seed(3); ni = NoiseIso(X, Y, sb_batch=16, loss_fn=_lin)
    ni(m, torch.optim.SGD(m.parameters(), lr=1.), X[:400], Y[:400])
    m.zero_grad(); _lin(lsq['m'](X[:400]), Y[:400]).backward()
    g = _flat_grad(list(lsq['m'].parameters())); lsq['m'].zero_grad()
    xi = (x0 - _vec(m)) - g
    assert math.isclose(float(xi.pow(2).sum()), ni.last['noise_sq'], rel_tol=1e-9)

def test_noise_sb_covariance_is_the_within_batch_covariance(lsq):
    "Given the batch: Cov ξ = (B−b)/(b(B−1))·S_B, not isotropic (the variances follow the inputs' scales). K = 40,000; 5 sd."
    torch.manual_seed(2)
    X, Y, m, ps = lsq['X'], lsq['Y'], lsq['m'], lsq['ps']
    B, b, K = torch.arange(400), 16, 40000
    ns = NoiseSB(sb_batch=b, loss_fn=_lin)
    m.zero_grad(); _lin(m(X[B]), Y[B]).backward(); g = _flat_grad(list(m.parameters()))
    xi = torch.stack([ns.noise(m, X[B], Y[B], g) for _ in range(K)]); m.zero_grad()
    want = (len(B) - b)/(b*(len(B) - 1))*torch.cov(ps[B].T, correction=0)
    C = torch.cov(xi.T, correction=0)
    torch.testing.assert_close(C.diagonal()/want.diagonal(), torch.ones(lsq['d'], dtype=torch.float64), rtol=0, atol=5*math.sqrt(2/K))
    assert C.diagonal().max()/C.diagonal().min() > 20                  # not isotropic
    torch.testing.assert_close(xi.mean(0), torch.zeros(lsq['d'], dtype=torch.float64), rtol=0, atol=5*(want.diagonal()/K).sqrt().max().item())

def test_noise_sb_trace_over_batches_is_sb_extra_noise(lsq):
    "Over random LB batches (without replacement from N), E‖ξ‖² = N/(N−1)·(1/b − 1/B)·tr Σ with c = 1: the derivation's claim."
    torch.manual_seed(4)
    X, Y, m, N = lsq['X'], lsq['Y'], lsq['m'], lsq['N']
    B, b, K = 200, 16, 20000
    ns = NoiseSB(sb_batch=b, loss_fn=_lin)
    sq = []
    for _ in range(K):
        i = torch.randperm(N)[:B]
        m.zero_grad(); _lin(m(X[i]), Y[i]).backward(); g = _flat_grad(list(m.parameters()))
        sq.append(float(ns.noise(m, X[i], Y[i], g).pow(2).sum()))
    m.zero_grad()
    sq = torch.tensor(sq, dtype=torch.float64)
    want = N/(N - 1)*(1/b - 1/B)*lsq['Sig'].trace().item()
    assert math.isclose(want, lsq['Sig'].trace().item()*(_c(N, b) - _c(N, B)), rel_tol=1e-12)
    assert abs(sq.mean().item() - want) < 5*sq.std().item()/math.sqrt(K), (sq.mean().item(), want)

def test_noise_sb_step_is_the_sub_batch_gradient(batch):
    "With c = 1, g_B + ξ = g_S: the step is the sub-batch's gradient step (same sub-batch from the same generator state)."
    xb, yb = batch
    m1, m2 = _mlp(), _mlp(); x0 = _vec(m1)
    torch.manual_seed(5); NoiseSB(sb_batch=8)(m1, torch.optim.SGD(m1.parameters(), lr=1.), xb, yb)
    torch.manual_seed(5); i = torch.randperm(len(xb))[:8]
    F.cross_entropy(m2(xb[i]), yb[i]).backward()
    torch.testing.assert_close(x0 - _vec(m1), _flat_grad(list(m2.parameters())), rtol=1e-10, atol=1e-12)
    m3 = _mlp(); NoiseSB(sb_batch=64)(m3, torch.optim.SGD(m3.parameters(), lr=1.), xb, yb)   # sub-batch = batch: no noise
    m4 = _mlp(); F.cross_entropy(m4(xb), yb).backward()
    torch.testing.assert_close(x0 - _vec(m3), _flat_grad(list(m4.parameters())), rtol=1e-10, atol=1e-12)

# ---------------------------------------------------------------- registry and resume
def test_registry_lists_the_interventions():
    assert remedy_options('grad-norm') == {'lam': 0.04, 'r': 0.05}
    assert remedy_options('noise-iso') == {'sb_batch': 256, 'every': 1, 'n_batches': 32, 'scale': 1.}
    assert remedy_options('noise-sb') == {'sb_batch': 256, 'scale': 1.}
    for k in ('grad-norm', 'noise-iso', 'noise-sb'): assert REMEDIES[k].regimes == ('LB',) and REMEDIES[k].source

@pytest.mark.parametrize('name', ['grad-norm', 'noise-iso', 'noise-sb'])
def test_resume_with_an_intervention_is_exact(small, tmp_path, name):
    kw = lambda: train_kwargs(name, small, 0.5, **({} if name == 'grad-norm' else {'sb_batch': 32}))
    straight = init_model('mlp-mnist1d', 0)
    h1 = train(straight, small, batch=0.5, epochs=3, seed=1, quiet=True, **kw())
    part = init_model('mlp-mnist1d', 0)
    train(part, small, batch=0.5, epochs=2, seed=1, quiet=True, checkpoint_dir=tmp_path, **kw())
    resumed = init_model('mlp-mnist1d', 0)
    h2 = train(resumed, small, batch=0.5, epochs=3, seed=1, quiet=True, checkpoint_dir=tmp_path, resume=True, **kw())
    assert h2['train_loss'] == h1['train_loss']
    for a, b in zip(straight.parameters(), resumed.parameters()): assert torch.equal(a, b)
