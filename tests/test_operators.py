"""`lbsharp.operators`: the Hessian, GGN and empirical Fisher operators checked against curvlinops 3.0.1 (a test-only
oracle) on tiny float64 problems — a classifier with cross-entropy and a regression with squared error, full and
restricted to one layer — plus per-layer spectra, the batch/loss contract, determinism and the errors."""
import copy, re
import numpy as np, pytest, torch, torch.nn as nn, torch.nn.functional as F
import lbsharp as lbs
from lbsharp.hessian import Hessian
from lbsharp.contract import trainable_params
from lbsharp.operators import GGN, Fisher, OPERATORS, LayerSpectra, layer_spectra, layers_of
from lbsharp.curvature import spectral_density
from lbsharp.estimators import hutchinson
from conftest import toy_mlp, toy_xy

curvlinops = pytest.importorskip('curvlinops')

CHUNK = 20  # three chunks of the 60 samples: ours and curvlinops' batches are the same
ORACLE = {'hessian': curvlinops.HessianLinearOperator, 'ggn': curvlinops.GGNLinearOperator, 'fisher': curvlinops.EFLinearOperator}
VARIANTS = {'hessian': (Hessian, {}), 'ggn': (GGN, {}), 'fisher': (Fisher, {'method': 'vmap'}), 'fisher-jvp': (Fisher, {'method': 'jvp'})}

def _op(kind, *args, **kw):
    "The operator of `kind` ('fisher-jvp': the empirical Fisher by its other method)."
    cls, extra = VARIANTS[kind]
    return cls(*args, **extra, **kw)


def _problem(task:str):
    "A tiny float64 model with its data and loss: 'ce' (3 classes) or 'mse' (one regression value per sample)."
    if task == 'ce':
        (X, Y), model = toy_xy(60, 5, 3, dtype=torch.float64), toy_mlp(5, 4, 3, act=nn.Tanh, dtype=torch.float64)
        return model, X, Y, F.cross_entropy, nn.CrossEntropyLoss(reduction='mean')
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(60, 3, generator=g, dtype=torch.float64), torch.randn(60, generator=g, dtype=torch.float64)
    model = toy_mlp(3, 5, 1, act=nn.Tanh, dtype=torch.float64)
    return model, X, Y, F.mse_loss, nn.MSELoss(reduction='mean')   # one output: 'mean' divides by N·1, as f does


def _dense(op): return op.mm(torch.eye(op.n, dtype=op.params[0].dtype))


def _oracle(kind, model, X, Y, loss, params):
    "curvlinops' dense matrix of the same f: the mean loss over the same chunks (targets shaped like the outputs)."
    Yc = Y[:, None] if Y.is_floating_point() else Y
    data = [(X[i:i+CHUNK], Yc[i:i+CHUNK]) for i in range(0, len(X), CHUNK)]
    C = ORACLE[kind](model.eval(), loss, params, data)
    return C @ torch.eye(C.shape[1], dtype=torch.float64)


@pytest.mark.parametrize('task', ['ce', 'mse'])
@pytest.mark.parametrize('kind', list(VARIANTS))
@pytest.mark.parametrize('block', ['all', 'last layer'])
def test_dense_matrix_equals_curvlinops(task, kind, block):
    model, X, Y, fn, loss = _problem(task)
    params = None if block == 'all' else '2'
    op = _op(kind, model, (X, Y), chunk=CHUNK, loss_fn=fn, params=params)
    ref = _oracle(kind.split('-')[0], model, X, Y, loss, trainable_params(model, params))
    assert op.n == ref.shape[0] == (sum(q.numel() for q in model.parameters()) if block == 'all' else sum(q.numel() for q in model[2].parameters()))
    ours = _dense(op)
    assert float((ours - ref).norm()/ref.norm()) < 1e-10, (kind, task, block)
    assert torch.allclose(ours, ours.T, atol=1e-12*float(ours.abs().max()))            # symmetric
    assert float(ref.norm()) > 1e-3                                                     # not a trivially zero matrix


@pytest.mark.parametrize('task', ['ce', 'mse'])
def test_three_operators_differ_and_ggn_fisher_are_psd(task):
    model, X, Y, fn, _ = _problem(task)
    H, G, E = (_dense(OPERATORS[k](model, (X, Y), chunk=CHUNK, loss_fn=fn)) for k in ('hessian', 'ggn', 'fisher'))
    for M in (G, E): assert float(torch.linalg.eigvalsh(M).min()) > -1e-12*float(torch.linalg.eigvalsh(M).max())
    assert float(torch.linalg.eigvalsh(H).min()) < -1e-6      # the Hessian of a nonlinear network is indefinite here: G ≠ H
    assert float((H - G).norm()/H.norm()) > 1e-3 and float((E - G).norm()/G.norm()) > 1e-2


def test_ggn_is_the_hessian_of_a_linear_regression():
    "For a linear model the residual term vanishes: G = H = (2/N) [X 1]ᵀ[X 1] for squared error."
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)
    lin = nn.Linear(3, 1).double()
    A = torch.cat([X, torch.ones(40, 1, dtype=torch.float64)], 1)
    for kind in ('ggn', 'hessian'):
        assert torch.allclose(_dense(OPERATORS[kind](lin, (X, Y), loss_fn=F.mse_loss, chunk=15)), 2*A.T @ A/40, atol=1e-12)


@pytest.mark.parametrize('kind', list(OPERATORS))
def test_layer_spectra_equal_eigvalsh_of_the_dense_blocks(kind):
    model, X, Y, fn, loss = _problem('ce')
    ls = layer_spectra(model, (X, Y), kind=kind, k=3, chunk=CHUNK, tol=1e-10, loss_fn=fn)
    assert isinstance(ls, LayerSpectra) and [r['layer'] for r in ls.layers] == ['0', '2'] and ls.kind == kind
    for r, (name, ps) in zip(ls.layers, layers_of(model)):
        ev = torch.linalg.eigvalsh(_oracle(kind, model, X, Y, loss, ps)).flip(0)[:3]
        assert r['n'] == sum(q.numel() for q in ps)
        np.testing.assert_allclose(r['eigenvalues'], ev.numpy(), rtol=1e-7, atol=1e-12)
    assert ls.top == {r['layer']: r['eigenvalues'][0] for r in ls.layers}
    assert ls.n_samples == 60 and ls.dtype == 'float64' and ls.chunk == CHUNK


def test_layer_spectra_blocks_given_as_names_modules_and_small_layers():
    "A layer with at most k parameters gets all its eigenvalues from its dense block; blocks can be any selection."
    model, X, Y, fn, loss = _problem('ce')
    ls = layer_spectra(model, (X, Y), kind='ggn', k=3, layers=[model[2].bias, ['0', model[2].weight]], chunk=CHUNK, tol=1e-10)
    assert [r['layer'] for r in ls.layers] == ['2.bias', '0+2.weight'] and [r['n'] for r in ls.layers] == [3, 36]
    ref = torch.linalg.eigvalsh(_oracle('ggn', model, X, Y, loss, [model[2].bias])).flip(0)
    np.testing.assert_allclose(ls.layers[0]['eigenvalues'], ref.numpy(), rtol=1e-9, atol=1e-14)
    assert ls.layers[0]['products'] == 2 + 3     # the probe's two, then the identity's 3 columns (no Lanczos)


def test_params_selection_and_its_errors():
    model, X, Y, *_ = _problem('ce')
    assert trainable_params(model, '0') == [model[0].weight, model[0].bias]
    assert trainable_params(model, ['2.bias', model[0]]) == [model[0].weight, model[0].bias, model[2].bias]   # model order
    assert trainable_params(model, model[2].weight) == [model[2].weight]
    for bad, msg in (('fc1', "'fc1' names no parameter or module of the model; its layers with parameters are ['0', '2']"),
                     (nn.Linear(5, 4), 'not a module of the model'), (torch.zeros(3), 'not a parameter of the model'),
                     ([], 'selects nothing'), (3, 'params: 3 (int) is not a name, a module or a parameter of the model')):
        with pytest.raises((ValueError, TypeError), match=re.escape(msg)): GGN(model, (X, Y), params=bad)
    frozen = copy.deepcopy(model); frozen[0].requires_grad_(False)
    with pytest.raises(ValueError, match="'0' has no trainable parameters"): Fisher(frozen, (X, Y), params='0')


@pytest.mark.parametrize('kind', ['ggn', 'fisher', 'fisher-jvp'])
def test_products_deterministic_kept_fresh_batched(kind):
    model, X, Y, fn, _ = _problem('ce')
    op = _op(kind, model, (X, Y), chunk=CHUNK, retain=True)
    V = torch.randn(op.n, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = op.mm(V)
    assert not a.requires_grad and torch.equal(a, op.mm(V))                   # the same product twice: bit-identical
    for b in (op.mm(V, fresh=True), op.mm(V, batched=True), torch.stack([op.mv(v) for v in V.T], 1)):
        assert float((a - b).norm()/a.norm()) < 1e-12
    assert op.products == 2 + 4*4 + 4                                           # the probe's two, then one per column
    with torch.no_grad(): model[0].weight.mul_(1.5)                             # new weights: the kept graphs are rebuilt
    fresh = _op(kind, model, (X, Y), chunk=CHUNK, retain=False).mm(V)
    assert float((op.mm(V) - fresh).norm()/fresh.norm()) < 1e-12 and float((fresh - a).norm()/a.norm()) > 1e-3


class _AlwaysDropout(nn.Module):
    "A network whose dropout is on even in evaluation mode: its products are random."
    def __init__(self): super().__init__(); self.a, self.b = nn.Linear(5, 8), nn.Linear(8, 3)
    def forward(self, x): return self.b(F.dropout(torch.tanh(self.a(x)), 0.5, training=True))


@pytest.mark.parametrize('kind', ['ggn', 'fisher', 'fisher-jvp'])
def test_random_network_is_refused_by_the_probe(kind):
    X, Y = torch.randn(30, 5), torch.randint(0, 3, (30,))
    with pytest.raises(ValueError, match=f'two identical {VARIANTS[kind][0].__name__}-vector products differ'):
        _op(kind, _AlwaysDropout(), (X, Y), retain=False)


class _DictModel(nn.Module):
    "A Hugging Face-style model: named inputs, a dict output with 'logits'."
    def __init__(self, net): super().__init__(); self.net = net
    def forward(self, features, scale): return {'logits': self.net(features*scale), 'hidden': None}

class _TupleModel(nn.Module):
    def __init__(self, net): super().__init__(); self.net = net
    def forward(self, x): return self.net(x), x.sum()


@pytest.mark.parametrize('kind', list(VARIANTS))
def test_dict_batches_and_tuple_outputs_go_through_the_contract(kind):
    model, X, Y, *_ = _problem('ce')
    ref = _dense(_op(kind, model, (X, Y), chunk=CHUNK, params='2'))
    scale = torch.full((60, 1), 2., dtype=torch.float64)
    dm = _DictModel(model)
    loader = torch.utils.data.DataLoader([{'features': X[i]/2, 'scale': scale[i], 'labels': Y[i]} for i in range(60)], batch_size=16)
    for data in (({'features': X/2, 'scale': scale}, Y), loader):
        op = _op(kind, dm, data, chunk=CHUNK, params='net.2')
        assert float((_dense(op) - ref).norm()/ref.norm()) < 1e-12
    op = _op(kind, _TupleModel(model), (X, Y), chunk=CHUNK, params=[model[2]])
    assert float((_dense(op) - ref).norm()/ref.norm()) < 1e-12


def test_regression_targets_default_to_squared_error_in_layer_spectra():
    model, X, Y, _, loss = _problem('mse')
    ls = layer_spectra(model, (X, Y), kind='ggn', k=2, chunk=CHUNK, tol=1e-10)   # float targets: MSE is the default loss
    ev = torch.linalg.eigvalsh(_oracle('ggn', model, X, Y, loss, [model[2].weight, model[2].bias])).flip(0)[:2]
    np.testing.assert_allclose(ls.layers[1]['eigenvalues'], ev.numpy(), rtol=1e-7)
    assert ls.loss == 'mse_loss'


def test_low_precision_models_are_measured_in_float32_and_left_as_they_are():
    model, X, Y, *_ = _problem('ce')
    half, X32 = copy.deepcopy(model).half(), X.float()
    with pytest.raises(ValueError, match=r'float16: its GGN-vector products would be rounding noise.*GGN\(copy.deepcopy'):
        GGN(half, (X32, Y))
    with pytest.warns(UserWarning, match='float16'): ls = layer_spectra(half, (X32, Y), kind='fisher', k=2, tol=1e-8)
    ref = layer_spectra(copy.deepcopy(half).float(), (X32, Y), kind='fisher', k=2, tol=1e-8)
    assert ls.model_dtype == 'float16' and ls.dtype == 'float32' and all(q.dtype == torch.float16 for q in half.parameters())
    for a, b in zip(ls.layers, ref.layers): np.testing.assert_allclose(a['eigenvalues'], b['eigenvalues'], rtol=1e-5)


def _per_term_fisher(model, X, Y, chunk):
    "(1/N) Σ gᵢgᵢᵀ with gᵢ the gradient of sample i's loss term of f through its chunk's forward pass, one backward each."
    model.eval(); gs = []
    for c in range(0, len(X), chunk):
        o = model(X[c:c+chunk])
        for i in range(len(o)):
            gs.append(torch.cat([t.reshape(-1) for t in torch.autograd.grad(
                F.cross_entropy(o[i:i+1], Y[c+i:c+i+1], reduction='sum'), list(model.parameters()), retain_graph=True)]))
    gs = torch.stack(gs)
    return gs.T @ gs/len(X)


def test_fisher_methods_agree_and_jvp_takes_batch_statistics():
    model, X, Y, fn, loss = _problem('ce')
    ref = _oracle('fisher', model, X, Y, loss, list(model.parameters()))
    for method in ('vmap', 'jvp'):
        for retain in (True, False):
            op = Fisher(model, (X, Y), chunk=CHUNK, method=method, retain=retain, group=7)
            assert op.method == method and float((_dense(op) - ref).norm()/ref.norm()) < 1e-10
            assert float((op.mm(torch.eye(op.n, dtype=torch.float64), batched=True) - ref).norm()/ref.norm()) < 1e-10
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Tanh(), nn.Linear(4, 3)).double()
    with pytest.raises(ValueError, match=r"method='vmap' needs each sample's loss on its own.*\(BatchNorm1d\).*use method='jvp'"):
        Fisher(net, (X, Y), method='vmap')
    op = Fisher(net, (X, Y), chunk=CHUNK)                                     # None: 'jvp' with chunk statistics
    assert op.method == 'jvp' and "method='jvp'" in repr(op)
    ref = _per_term_fisher(net, X, Y, CHUNK)
    assert float((_dense(op) - ref).norm()/ref.norm()) < 1e-10
    assert float((ref - _per_term_fisher(net, X, Y, 30)).norm()/ref.norm()) > 1e-3   # the chunks are part of the definition
    ls = layer_spectra(net, (X, Y), kind='fisher', k=2, chunk=CHUNK, tol=1e-10)
    np.testing.assert_allclose(ls.layers[0]['eigenvalues'], torch.linalg.eigvalsh(ref[:24, :24]).flip(0)[:2].numpy(), rtol=1e-7)
    G = GGN(net, (X, Y), chunk=CHUNK)
    assert float(torch.linalg.eigvalsh(_dense(G)).min()) > -1e-12
    running = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)).double()   # eval mode: running statistics
    assert Fisher(running, (X, Y)).method == 'vmap'


def test_ggn_with_batchnorm_in_batch_mode_equals_the_chunk_jacobian_formula():
    "BatchNorm with chunk statistics (the paper's networks): G = (1/N) Σ_s J_sᵀ ∇²ℓ_s J_s with J_s the whole chunk's Jacobian."
    X, Y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    net = toy_mlp(5, 4, 3, act=nn.Tanh, bn='batch', seed=1, dtype=torch.float64)
    names = [k for k, _ in net.named_parameters()]; ps = [q.detach() for q in net.parameters()]
    flat = torch.cat([q.reshape(-1) for q in ps])
    def out(v, x): return torch.func.functional_call(net, dict(zip(names, (t.view_as(q) for t, q in zip(v.split([q.numel() for q in ps]), ps)))), (x,))
    ref = 0
    for c in range(0, 40, CHUNK):
        x, y = X[c:c+CHUNK], Y[c:c+CHUNK]
        J = torch.autograd.functional.jacobian(lambda v: out(v, x), flat).reshape(-1, len(flat))          # (b·C)×n
        o = out(flat, x).detach()
        Hl = torch.autograd.functional.hessian(lambda z: F.cross_entropy(z.view_as(o), y, reduction='sum'), o.reshape(-1))
        ref = ref + J.T @ Hl @ J/40
    for retain in (True, False):
        assert float((_dense(GGN(net, (X, Y), chunk=CHUNK, retain=retain)) - ref).norm()/ref.norm()) < 1e-10


def test_layer_spectra_errors_before_any_work():
    model, X, Y, *_ = _problem('ce')
    for kw, msg in ((dict(kind='kfac'), "kind='kfac' is unknown; use one of \\['hessian', 'ggn', 'fisher'\\]"),
                    (dict(k=0), 'k=0 must be an integer >= 1'), (dict(layers='0'), "layers='0' must be a non-empty list"),
                    (dict(layers=['0', 'nope']), "'nope' names no parameter or module"), (dict(bn='off'), "bn='off' is unknown")):
        with pytest.raises(ValueError, match=msg): layer_spectra(model, (X, Y), **kw)
    with pytest.raises(ValueError, match='group=0 must be an integer >= 1'): Fisher(model, (X, Y), group=0)
    with pytest.raises(ValueError, match="method='exact' is unknown; use one of \\['vmap', 'jvp'\\] or None"): Fisher(model, (X, Y), method='exact')
    with pytest.raises(ValueError, match=r'V has shape \(5, 2\); it must be n×k with n=15'): GGN(model, (X, Y), params='2').mm(torch.zeros(5, 2))


def test_result_shows_itself_as_a_table_and_a_plot():
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    model, X, Y, *_ = _problem('ce')
    ls = layer_spectra(model, (X, Y), kind='hessian', k=2, tol=1e-8)
    t = ls.table().splitlines()
    assert t[0] == '| layer | parameters | λ1 | λ2 | products |' and len(t) == 4
    assert t[2].startswith('| `0` | 24 | ' + f"{ls.layers[0]['eigenvalues'][0]:.4g} |")
    assert 'Hessian block' in ls._repr_markdown_() and 'LayerSpectra(hessian, k=2, top={0: ' in repr(ls)
    ax = ls.plot()
    assert [tl.get_text() for tl in ax.get_xticklabels()] == ['0', '2'] and len(ax.lines) == 2
    assert ax.get_yscale() == ('log' if min(v for r in ls.layers for v in r['eigenvalues']) > 0 else 'symlog')
    plt.close('all')
    assert LayerSpectra(**ls.to_dict()).table() == ls.table()


def test_estimators_take_the_new_operators():
    model, X, Y, fn, loss = _problem('ce')
    for kind in ('ggn', 'fisher'):
        op = OPERATORS[kind](model, (X, Y), chunk=CHUNK)
        D = _dense(op); ev = torch.linalg.eigvalsh(D).flip(0)
        np.testing.assert_allclose(op.eigenvalues(2, tol=1e-10), ev[:2].numpy(), rtol=1e-8)
        np.testing.assert_allclose(op.eigenvalues(2, method='arpack', tol=1e-10), ev[:2].numpy(), rtol=1e-8)
        t = hutchinson(op, products=op.n + 1, seed=0, block=8)
        assert abs(t.estimate - float(torch.trace(D))) <= 5*t.stderr + 1e-12
        sd = spectral_density(op, steps=op.n, vectors=2, quiet=True)
        np.testing.assert_allclose(sd.range[1], float(ev[0]), rtol=1e-8)
        assert sd.meta['kind'] == type(op).__name__ and sd.meta['samples'] == 60


def test_public_names():
    from lbsharp import operators
    assert lbs.GGN is operators.GGN and lbs.Fisher is operators.Fisher and lbs.layer_spectra is operators.layer_spectra
    assert lbs.LayerSpectra is operators.LayerSpectra and lbs.operators is operators   # no public name hides the module
    assert {'GGN', 'Fisher', 'layer_spectra', 'LayerSpectra'} <= set(lbs.__all__)
