"The default solver setting is invariant to the loss's scale; the multi-start budget reports the best of its starts."
import inspect, math
import pytest, torch, torch.nn.functional as F

from lbsharp.box import model_sharpness, SOLVERS
from conftest import toy_mlp, adam_fit


@pytest.fixture(scope='module')
def trained():
    "A small MLP trained for real (full-batch Adam, a few seconds) on a separable-ish 10-class problem."
    g = torch.Generator().manual_seed(0)
    centres = 2*torch.randn(10, 20, generator=g)
    Y = torch.randint(0, 10, (2000,), generator=g)
    X = centres[Y] + 1.5*torch.randn(2000, 20, generator=g)
    m = adam_fit(toy_mlp(20, 64, 10, depth=2), X, Y, 300, lr=3e-3)
    assert F.cross_entropy(m(X), Y).item() < 0.05                # a minimum, not a random point
    return m, (X, Y)


def scaled_loss(c):
    def loss(out, y, reduction='mean'): return c*F.cross_entropy(out, y, reduction=reduction)
    return loss


def test_default_is_scale_invariant(trained):
    m, data = trained
    rs = {c: model_sharpness(m, data, loss_fn=scaled_loss(c)) for c in (1e-3, 1., 1e3)}
    assert inspect.signature(model_sharpness).parameters['solver'].default == 'scaled' == next(iter(SOLVERS))
    assert all(r.solver == 'scaled' for r in rs.values())
    ratio = {c: r.fmax/r.f0 for c, r in rs.items()}
    for c in (1e-3, 1e3): assert math.isclose(ratio[c], ratio[1.], rel_tol=1e-3), ratio
    for c in (1e-3, 1e3): assert math.isclose(rs[c].scale*c, rs[1.].scale, rel_tol=1e-4)   # s ∝ 1/c, recorded
    assert ratio[1.] > 1.01                                       # the solver climbed: the agreement is not trivial


def test_mean_and_sum_are_not_scale_invariant(trained):
    "The same check fails for the literal setting: what the default fixes."
    m, data = trained
    lo, hi = (model_sharpness(m, data, solver='mean', loss_fn=scaled_loss(c)) for c in (1e-3, 1e3))
    assert not math.isclose(lo.fmax/lo.f0, hi.fmax/hi.f0, rel_tol=1e-2)


def test_subspace_best_of_starts(trained):
    m, data = trained
    one = model_sharpness(m, data, p=20, starts=1)
    many = model_sharpness(m, data, p=20, starts=4)
    assert [r['start'] for r in many.runs] == ['zero', 'sign', 'vertex1', 'vertex2'] and many.starts == 4
    assert many.runs[0]['fmax'] == one.fmax == one.runs[0]['fmax']        # the first start is the single-start run
    assert [r['fmax'] for r in model_sharpness(m, data, p=20, starts=2).runs] == [r['fmax'] for r in many.runs[:2]]
    assert many.fmax == max(r['fmax'] for r in many.runs) >= one.fmax
    assert many.best_start == max(many.runs, key=lambda r: r['fmax'])['start']
    assert many.iterations == sum(r['iterations'] for r in many.runs)
    assert many.evaluations == sum(r['evaluations'] for r in many.runs) + 1   # + the evaluation at x itself
    assert math.isclose(many.phi, 100*(many.fmax - many.f0)/(1 + many.f0))


def test_default_budget_per_space(trained):
    from lbsharp.box import STARTS
    m, data = trained
    assert model_sharpness(m, data, iters=2).starts == STARTS['full'] == 1
    r = model_sharpness(m, data, p=10, iters=2)
    assert r.starts == STARTS['subspace'] == len(r.runs) > 1


def test_lbfgsb_path_recorded(trained, monkeypatch):
    import importlib; S = importlib.import_module("lbsharp.box")   # the ε-sharpness engine (`lbs.sharpness` is the public function, lbsharp.measure)
    m, data = trained
    for fast, name in ((True, 'setulb'), (False, 'minimize')):
        monkeypatch.setattr(S, 'FAST_LBFGSB', fast)
        assert model_sharpness(m, data, iters=2).lbfgsb == name


def test_bad_starts(trained):
    m, data = trained
    with pytest.raises(ValueError, match='starts=0'): model_sharpness(m, data, starts=0)
