"""The counter-based generator of random subspaces (`Subspace(..., gen='counter')`).

The hash is checked bit for bit against an independent pure-NumPy uint64 implementation of SplitMix64, the normals
against the same Box-Muller in NumPy float32; A does not depend on the block size or on `dense`; its moments match
N(0,1) (or U[0,1)) within statistical tolerance at a fixed seed; A and Aᵀ are adjoint; `model_sharpness` records the
generator; the default generator is unchanged; and, where CUDA is available, the device gives the same A.
"""
import math
import numpy as np, pytest, torch, torch.nn as nn

from lbsharp.subspace import Subspace, counter_words, counter_block, GENERATORS
from lbsharp.box import model_sharpness
from conftest import toy_mlp

GAMMA, M1, M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def np_mix(z):
    "SplitMix64's output function in NumPy uint64 (wrapping arithmetic is defined for unsigned types)."
    z = z.astype(np.uint64)
    with np.errstate(over='ignore'):
        z = (z ^ (z >> np.uint64(30)))*M1
        z = (z ^ (z >> np.uint64(27)))*M2
    return z ^ (z >> np.uint64(31))


def np_words(seed, rows, pairs):
    "w_iq = mix(s + (2^32 i + q) γ mod 2^64), s = mix(seed + γ): written from the formula, not from the torch code."
    with np.errstate(over='ignore'):
        s = np_mix(np.array([seed], dtype=np.uint64) + GAMMA)[0]
        c = (np.asarray(rows, dtype=np.uint64)[:, None] << np.uint64(32)) + np.asarray(pairs, dtype=np.uint64)[None, :]
        return np_mix(s + c*GAMMA)


def np_block(seed, dist, r0, r, p):
    w = np_words(seed, np.arange(r0, r0 + r), np.arange((p + 1)//2))
    hi = ((w >> np.uint64(40)) & np.uint64(0xFFFFFF)).astype(np.float32)
    lo = (w & np.uint64(0xFFFFFF)).astype(np.float32)
    out = np.empty((r, 2*w.shape[1]), np.float32)
    if dist == 'uniform':
        out[:, 0::2], out[:, 1::2] = hi*np.float32(2.**-24), lo*np.float32(2.**-24)
    else:
        rad = np.sqrt(np.float32(-2)*np.log((hi + np.float32(1))*np.float32(2.**-24)))
        th = lo*np.float32(2*math.pi*2.**-24)
        out[:, 0::2], out[:, 1::2] = rad*np.cos(th), rad*np.sin(th)
    return out[:, :p]


def as_u64(t): return t.cpu().numpy().view(np.uint64)


def test_splitmix64_reference_values():
    "The NumPy reference reproduces SplitMix64's published first outputs for seed 0 (so both follow the algorithm)."
    # SplitMix64 from state 0: state += γ, return mix(state): 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f
    outs = np_mix(np.arange(1, 4, dtype=np.uint64)*GAMMA)
    assert [hex(int(v)) for v in outs] == ['0xe220a8397b1dcdaf', '0x6e789e6aa1b965f4', '0x6c45d188009454f']


@pytest.mark.parametrize('seed', [0, 1, 12345, 2**40 + 7])
def test_words_equal_numpy_reference_bit_for_bit(seed):
    rows = np.r_[0:50, 2**20:2**20 + 30, 2**31 - 3:2**31 + 3, 3*10**9]      # also rows beyond 2^31 (n up to 2^64/2^32)
    pairs = np.arange(0, 60)
    got = as_u64(counter_words(seed, torch.tensor(rows, dtype=torch.int64), torch.tensor(pairs)))
    np.testing.assert_array_equal(got, np_words(seed, rows, pairs))


@pytest.mark.parametrize('dist', ['normal', 'uniform'])
@pytest.mark.parametrize('p', [1, 7, 100])
def test_block_equals_numpy_reference(dist, p):
    got = counter_block(5, dist, 1000, 300, p).numpy()
    ref = np_block(5, dist, 1000, 300, p)
    if dist == 'uniform': np.testing.assert_array_equal(got, ref)            # exact: integers times 2^-24
    else: np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)        # log/cos/sin to float32 rounding


def test_streamed_equals_whole_for_any_block_size():
    n, p = 1000, 9
    whole = counter_block(3, 'normal', 0, n, p)
    for R in (1, 7, 64, 999, 4096):
        S = Subspace(n, p, seed=3, gen='counter', dense=False); S.counter_rows = R
        assert torch.equal(torch.cat([b for _, b in S.blocks()]), whole), R
    assert torch.equal(Subspace(n, p, seed=3, gen='counter', dense=True).A, whole)
    assert torch.equal(Subspace(n, p + 4, seed=3, gen='counter').A[:, :p], whole)   # columns extend, not redraw
    assert torch.equal(Subspace(n, p, seed=3, gen='counter', dtype=torch.float64).A, whole.double())  # dtype-free


def test_normal_moments():
    "Fixed seed, 2·10^6 entries: mean, variance, 4th moment, column norms and column correlations of N(0,1)."
    A = Subspace(20_000, 100, seed=0, gen='counter').A.double()
    N = A.numel()
    assert abs(A.mean()) < 4/math.sqrt(N)
    assert abs(A.var() - 1) < 4*math.sqrt(2/N)
    assert abs((A**4).mean() - 3) < 4*math.sqrt(96/N)
    assert abs(A.abs().max()) <= math.sqrt(-2*math.log(2.**-24)) + 1e-5        # the documented truncation
    norms2 = (A**2).sum(0)                                                       # ~ χ²(n): mean n, sd sqrt(2n)
    assert ((norms2 - 20_000).abs() < 5*math.sqrt(2*20_000)).all()
    C = (A.T @ A)/20_000; off = C - torch.diag(torch.diag(C))
    assert off.abs().max() < 5.5/math.sqrt(20_000)                              # 4950 pairs, sd 1/sqrt(n)
    # neighbouring rows are not correlated either (counter 2^32 i + q: consecutive i)
    assert abs(float((A[1:]*A[:-1]).mean())) < 4/math.sqrt(N)
    # the fraction beyond 1, 2, 3 sigma
    for k, pr in ((1, 0.3173105), (2, 0.0455003), (3, 0.0026998)):
        frac = float((A.abs() > k).double().mean())
        assert abs(frac - pr) < 5*math.sqrt(pr*(1 - pr)/N), (k, frac)


def test_uniform_moments():
    A = Subspace(20_000, 100, dist='uniform', seed=0, gen='counter').A.double()
    N = A.numel()
    assert 0 <= A.min() and A.max() < 1
    assert abs(A.mean() - 0.5) < 4*math.sqrt(1/12/N) and abs(A.var() - 1/12) < 4*math.sqrt(1/180/N)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_adjoint(dtype):
    "⟨A y, g⟩ = ⟨y, Aᵀ g⟩ with streamed blocks (several, the last one partial)."
    S = Subspace(5000, 30, seed=2, gen='counter', dtype=dtype, dense=False); S.counter_rows = 777
    g = torch.Generator().manual_seed(0)
    y, r = torch.randn(30, generator=g, dtype=dtype), torch.randn(5000, generator=g, dtype=dtype)
    lhs, rhs = float(S.mv(y).double() @ r.double()), float(y.double() @ S.rmv(r).double())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert abs(lhs - rhs) <= tol*(S.mv(y).norm()*r.norm()).item()


def test_pinv_streamed():
    S = Subspace(3000, 20, seed=1, gen='counter', dense=False); S.counter_rows = 500
    A, x = S.A if S.A is not None else torch.cat([b for _, b in S.blocks()]), torch.randn(3000)
    torch.testing.assert_close(S.pinv(x), torch.linalg.lstsq(A.double(), x.double()[:, None]).solution[:, 0], rtol=1e-9, atol=1e-12)


def test_default_generator_unchanged():
    "gen='cpu' is the default and still the committed generator: block 0 from SeedSequence([seed, 0]) by torch.randn."
    S = Subspace(100, 5, seed=7)
    assert S.gen == 'cpu' and set(GENERATORS) == {'cpu', 'counter'}
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([7, 0]).generate_state(1)[0]))
    assert torch.equal(S.A, torch.randn(100, 5, generator=g))


def test_sharpness_records_generator_and_matches_dense():
    m = toy_mlp(5, 8, 3, act=nn.Tanh)
    X, Y = torch.randn(60, 5), torch.randint(0, 3, (60,))   # the global stream, after the weights
    r = model_sharpness(m, (X, Y), p=6, gen='counter', iters=3, dense=False)
    assert (r.gen, r.to_dict()['gen'], r.dist, r.seed) == ('counter', 'counter', 'normal', 0)
    r2 = model_sharpness(m, (X, Y), p=6, gen='counter', iters=3, dense=True)
    assert math.isclose(r.phi, r2.phi, rel_tol=1e-5)
    assert model_sharpness(m, (X, Y), p=6, iters=2).gen == 'cpu' and model_sharpness(m, (X, Y), iters=2).gen is None
    with pytest.raises(ValueError, match="gen='mt'"): Subspace(10, 2, gen='mt')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_gives_the_same_A():
    rows, pairs = torch.arange(2**31 - 100, 2**31 + 100), torch.arange(50)
    assert torch.equal(counter_words(9, rows.cuda(), pairs.cuda()).cpu(), counter_words(9, rows, pairs))
    for dist in ('normal', 'uniform'):
        a, b = counter_block(9, dist, 12345, 5000, 100, 'cuda').cpu(), counter_block(9, dist, 12345, 5000, 100)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    S = Subspace(300_000, 100, seed=1, gen='counter', device='cuda', dense=False)
    assert S.counter_rows == 2**18
    y = torch.randn(100)
    torch.testing.assert_close(S.mv(y.cuda()).cpu(), Subspace(300_000, 100, seed=1, gen='counter', dense=False).mv(y), rtol=1e-4, atol=1e-4)
