"""The estimators take ANY operator with `n` and `mm` (curvlinops and hessian-eigenthings keep operators apart from
algorithms): a plain diagonal operator with nothing else — no parameters, no matrix, no product counter — gives the
analytic answers, and the same numbers as the same matrix through `Matrix`."""
import numpy as np, pytest, torch, torch.nn as nn
from lbsharp.estimators import hutchinson, rademacher
from lbsharp.curvature import Matrix, lanczos, spectral_density, hutchpp
from lbsharp.hessian import Hessian

class Diag:
    "The operator protocol and nothing more: `n` and `mm`."
    def __init__(self, d): self.d, self.n = d, len(d)
    def mm(self, V): return self.d[:, None]*V

D = torch.cat([torch.linspace(-1, 2, 37), torch.tensor([9., 25.])]).double()   # distinct eigenvalues, two outliers

def test_hutchinson_on_a_bare_operator_is_exact_for_a_diagonal():
    t = hutchinson(Diag(D), 20, seed=1)            # vᵀDv = Σ d_i v_i² = tr D for every Rademacher v
    assert t.estimate == pytest.approx(float(D.sum()), rel=1e-12) and t.stderr < 1e-12
    assert t.estimate == hutchinson(Matrix(torch.diag(D)), 20, seed=1).estimate

def test_hutchpp_and_lanczos_on_a_bare_operator_equal_the_matrix():
    a, b = hutchpp(Diag(D), 30, seed=2, block=7), hutchpp(Matrix(torch.diag(D)), 30, seed=2, block=7)
    assert (a.estimate, a.stderr) == pytest.approx((b.estimate, b.stderr), rel=1e-10, abs=1e-12)
    V0 = rademacher(len(D), 2, seed=0)
    for x, y in zip(lanczos(Diag(D), V0, 10, quiet=True), lanczos(Matrix(torch.diag(D)), V0, 10, quiet=True)):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)

def test_spectral_density_on_a_bare_operator():
    sd = spectral_density(Diag(D), steps=len(D), vectors=3, seed=0, quiet=True)
    assert sd.range == pytest.approx((float(D.min()), float(D.max())), rel=1e-8)   # n steps: the nodes are the eigenvalues
    assert sd.moment(1) == pytest.approx(float(D.mean()), rel=1e-10)             # vᵀDv/vᵀv = tr D/n exactly
    assert sd.products == 3*len(D) and sd.meta == {'kind': 'Diag'}

def test_a_bare_operator_may_name_its_device_and_dtype():
    op = Diag(D.float()); op.dtype = torch.float32
    assert rademacher(op.n, 4, 0, op).dtype == torch.float32
    assert hutchinson(op, 4).estimate == pytest.approx(float(D.sum()), rel=1e-5)

def test_density_counts_the_products_the_hessian_counts():
    torch.manual_seed(0)
    H = Hessian(nn.Linear(3, 2), (torch.randn(20, 3), torch.randint(0, 2, (20,))), probe=False)
    p0 = H.products
    sd = spectral_density(H, steps=4, vectors=2, quiet=True)
    assert sd.products == H.products - p0 == 8
    assert sd.meta['samples'] == 20 and sd.meta['chunk'] == H.chunk
