"""Issue #24 ("silent wrong numbers from the public API") and the batch/loss contract of #27, one row per case.

Every row runs the public API as a user would (`import lbsharp as lbs`) on the README's model and data, and asserts
either the number (equal to the float32 / mean-loss / tensor-pair answer it must be) or a clear refusal: a
ValueError/TypeError raised by lbsharp itself, on one line, containing the fragment that says what to do.
Every row also checks that the user's model comes back exactly as given (dtype, weights, gradients, mode).
"""
import copy, traceback, warnings
from types import SimpleNamespace
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, Dataset
import lbsharp as lbs

def readme():
    "The README's 'Measure your own model' model and data."
    torch.manual_seed(0)
    X, Y = torch.randn(512, 20), torch.randint(0, 3, (512,))
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3)), X, Y

MODEL, X, Y = readme()
torch.manual_seed(1)
YR = torch.randn(512)                                    # regression targets
REG = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))
KW = dict(iters=3)                                       # 3 L-BFGS-B iterations: the same code path, a third of the time

def ignores_reduction(out, y, reduction='mean'): return F.cross_entropy(out, y)             # always the mean
def plus_const(out, y, reduction='mean'): return F.cross_entropy(out, y, reduction=reduction) + 0.1
def mean_only(out, y): return F.cross_entropy(out, y)                                       # no reduction argument: the batch mean

class Wrap(nn.Module):
    "The README model returning its logits in another container."
    def __init__(self, how, m=MODEL): super().__init__(); self.m, self.how = m, how
    def forward(self, x):
        z = self.m(x)
        return dict(tuple=lambda: (z, x.sum()), dict=lambda: {'logits': z}, obj=lambda: SimpleNamespace(logits=z, loss=None),
                    loss=lambda: {'loss': z.sum()}, scores=lambda: {'scores': z}, tokens=lambda: z[:, None].expand(-1, 4, -1))[self.how]()

class Named(nn.Module):
    "A model taking named inputs, as Hugging Face models do."
    def __init__(self, m=MODEL): super().__init__(); self.m = m
    def forward(self, input_ids, attention_mask=None): return self.m(input_ids*(1 if attention_mask is None else attention_mask[:, None]))

class Dicts(Dataset):
    def __init__(self, **cols): self.cols = cols
    def __len__(self): return 512
    def __getitem__(self, i): return {k: (v[i] if isinstance(v, torch.Tensor) else v) for k, v in self.cols.items()}

class Attention(nn.Module):
    "Self-attention through F.scaled_dot_product_attention (whose default CPU/GPU kernels have no second derivative)."
    def __init__(self):
        super().__init__(); torch.manual_seed(2); self.qkv, self.out = nn.Linear(5, 15), nn.Linear(5, 3)
    def forward(self, x):
        q, k, v = self.qkv(x.view(len(x), 4, 5)).chunk(3, -1)
        return self.out(F.scaled_dot_product_attention(q, k, v).mean(1))
ATT = Attention()

def math_kernel(f):
    "f() with attention on PyTorch's math kernel, the reference for second derivatives."
    from torch.nn.attention import sdpa_kernel, SDPBackend
    with sdpa_kernel([SDPBackend.MATH]): return f()

def f32(m): return copy.deepcopy(m).float()              # the float32 model at exactly the (rounded) low-precision weights

def phi(r): return r.phi
def top(r): return r.top
def line(r): return r['train']['loss']

S, H, L = lbs.sharpness, lbs.hessian_spectrum, lambda *a, **k: lbs.landscape(*a, coords=[-1, 0, 1], quiet=True, **k)
HALF, BF16 = copy.deepcopy(MODEL).half(), copy.deepcopy(MODEL).bfloat16()

# (case, model, call(model) -> result, expected: ('value', reference(), read) or ('refused', fragment))
ROWS = [
    # --- low precision: measured in float32 at the same weights, the model left as it was, the dtypes recorded
    ('sharpness fp16', HALF, lambda m: S(m, (X, Y), **KW), ('value', lambda: S(f32(HALF), (X, Y), **KW), phi)),
    ('sharpness bf16', BF16, lambda m: S(m, (X, Y), **KW), ('value', lambda: S(f32(BF16), (X, Y), **KW), phi)),
    ('sharpness fp16 loader', HALF, lambda m: S(m, DataLoader(TensorDataset(X, Y), batch_size=64), **KW),
     ('value', lambda: S(f32(HALF), (X, Y), **KW), phi)),
    ('hessian fp16', HALF, lambda m: H(m, (X, Y)), ('value', lambda: H(f32(HALF), (X, Y)), top)),
    ('landscape bf16', BF16, lambda m: L(m, (X, Y)), ('value', lambda: L(f32(BF16), (X, Y)), line)),
    ('Hessian operator fp16', HALF, lambda m: lbs.Hessian(m, (X, Y)), ('refused', 'lbs.hessian_spectrum measures it in float32')),
    # --- the loss contract: 'sum' must be len(batch) x 'mean', checked on the first chunk
    ('sharpness loss ignores reduction', MODEL, lambda m: S(m, (X, Y), loss_fn=ignores_reduction), ('refused', 'it ignores reduction')),
    ('hessian loss ignores reduction', MODEL, lambda m: H(m, (X, Y), loss_fn=ignores_reduction), ('refused', 'it ignores reduction')),
    ('landscape loss ignores reduction', MODEL, lambda m: L(m, (X, Y), loss_fn=ignores_reduction), ('refused', 'it ignores reduction')),
    ('Hessian operator loss ignores reduction', MODEL, lambda m: lbs.Hessian(m, (X, Y), loss_fn=ignores_reduction),
     ('refused', 'it ignores reduction')),
    ('sharpness loss with a constant term', MODEL, lambda m: S(m, (X, Y), loss_fn=plus_const), ('refused', 'not 256 × the mean')),
    ('sharpness batch-mean loss', MODEL, lambda m: S(m, (X, Y), loss_fn=mean_only, **KW), ('value', lambda: S(MODEL, (X, Y), **KW), phi)),
    ('Hessian operator batch-mean loss', MODEL, lambda m: lbs.Hessian(m, (X, Y), loss_fn=mean_only), ('refused', 'does not take reduction=')),
    ('sharpness MSE on integer labels', MODEL, lambda m: S(m, (X, Y), loss_fn=F.mse_loss), ('refused', 'fails on the model')),
    # --- outputs: a tuple's first item, a dict's or an object's logits, or output_fn
    ('sharpness tuple output', Wrap('tuple'), lambda m: S(m, (X, Y), **KW), ('value', lambda: S(MODEL, (X, Y), **KW), phi)),
    ('sharpness dict output', Wrap('dict'), lambda m: S(m, (X, Y), **KW), ('value', lambda: S(MODEL, (X, Y), **KW), phi)),
    ('sharpness .logits output', Wrap('obj'), lambda m: S(m, (X, Y), **KW), ('value', lambda: S(MODEL, (X, Y), **KW), phi)),
    ('hessian tuple output', Wrap('tuple'), lambda m: H(m, (X, Y)), ('value', lambda: H(MODEL, (X, Y)), top)),
    ('hessian tuple output, eval-mode model', Wrap('tuple', nn.Sequential(copy.deepcopy(MODEL), nn.Dropout(0.5))).eval(), lambda m: H(m, (X, Y)),
     ('value', lambda: H(MODEL, (X, Y)), top)),                                 # and it stays in eval mode (checked for every row)
    ('landscape dict output', Wrap('dict'), lambda m: L(m, (X, Y)), ('value', lambda: L(MODEL, (X, Y)), line)),
    ('sharpness output_fn', Wrap('scores'), lambda m: S(m, (X, Y), output_fn=lambda o: o['scores'], **KW),
     ('value', lambda: S(MODEL, (X, Y), **KW), phi)),
    ('sharpness unknown dict output', Wrap('scores'), lambda m: S(m, (X, Y)), ('refused', 'pass output_fn=')),
    ('sharpness loss-only output', Wrap('loss'), lambda m: S(m, (X, Y)), ('refused', 'holds a loss but no logits')),
    ('sharpness per-token logits', Wrap('tokens'), lambda m: S(m, (X, Y[:, None].expand(-1, 4))), ('refused', 'per-token targets')),
    # --- regression: float targets, MSE by default, a (N,) target read as the (N, 1) output's column
    ('sharpness regression MSE', REG, lambda m: S(m, (X, YR), loss_fn=F.mse_loss, **KW),
     ('value', lambda: S(REG, (X, YR[:, None]), loss_fn=F.mse_loss, **KW), phi)),
    ('sharpness regression default loss', REG, lambda m: S(m, (X, YR), **KW),
     ('value', lambda: S(REG, (X, YR[:, None]), loss_fn=F.mse_loss, **KW), phi)),
    ('hessian regression default loss', REG, lambda m: H(m, (X, YR)), ('value', lambda: H(REG, (X, YR[:, None]), loss_fn=F.mse_loss), top)),
    ('sharpness regression 3 outputs', MODEL, lambda m: S(m, (X, YR)), ('refused', "regression target needs the output's shape")),
    ('sharpness loss broadcasting a target', REG, lambda m: S(m, (X, Y), loss_fn=lambda o, y, reduction='mean': F.mse_loss(o, y.float(), reduction=reduction)),
     ('refused', 'broadcasts the targets')),
    ('sharpness cross-entropy on one column', REG, lambda m: S(m, (X, YR), loss_fn=F.cross_entropy), ('refused', 'single output column')),
    # --- attention: the Hessian's products run on the math kernel (the fused kernels have no double backward)
    ('hessian attention', ATT, lambda m: H(m, (X, Y)), ('value', lambda: math_kernel(lambda: H(ATT, (X, Y))), top)),
    ('hutchinson on the Hessian operator, attention', ATT, lambda m: lbs.hutchinson(lbs.Hessian(m, (X, Y)), products=4),
     ('value', lambda: math_kernel(lambda: lbs.hutchinson(lbs.Hessian(ATT, (X, Y)), products=4)), lambda t: t.estimate)),
    # --- dict batches from a DataLoader: the target under 'labels', the rest passed as model(**inputs)
    ('sharpness dict batches', Named(), lambda m: S(m, DataLoader(Dicts(input_ids=X, labels=Y), batch_size=64), **KW),
     ('value', lambda: S(MODEL, (X, Y), **KW), phi)),
    ('sharpness dict batches with a mask', Named(), lambda m: S(m, DataLoader(Dicts(input_ids=X, attention_mask=torch.ones(512), label=Y), batch_size=64), **KW),
     ('value', lambda: S(MODEL, (X, Y), **KW), phi)),
    ('landscape dict batches', Named(), lambda m: L(m, DataLoader(Dicts(input_ids=X, labels=Y), batch_size=64)), ('value', lambda: L(MODEL, (X, Y)), line)),
    ('sharpness (dict, Y)', Named(), lambda m: S(m, ({'input_ids': X}, Y), **KW), ('value', lambda: S(MODEL, (X, Y), **KW), phi)),
    ('sharpness dict batches without labels', Named(), lambda m: S(m, DataLoader(Dicts(input_ids=X, y=Y), batch_size=64)),
     ('refused', "no target under 'labels' or 'label'")),
    ('sharpness dict batches, wrong names', MODEL, lambda m: S(m, DataLoader(Dicts(x=X, labels=Y), batch_size=64)),
     ('refused', 'passed as keyword arguments')),
    ('sharpness dict batches with text', Named(), lambda m: S(m, DataLoader(Dicts(input_ids=X, text='a', labels=Y), batch_size=64)),
     ('refused', 'non-tensor entries')),
]

def state(m):
    return ([(k, v.dtype, v.detach().clone()) for k, v in m.state_dict().items()],
            [None if p.grad is None else p.grad.clone() for p in m.parameters()], [x.training for x in m.modules()])

def same(a, b):
    return (len(a[0]) == len(b[0]) and all(k == k2 and d == d2 and torch.equal(v, v2) for (k, d, v), (k2, d2, v2) in zip(a[0], b[0]))
            and all((g is None and h is None) or (g is not None and h is not None and torch.equal(g, h)) for g, h in zip(a[1], b[1]))
            and a[2] == b[2])

@pytest.mark.parametrize('case,model,call,expected', ROWS, ids=[r[0] for r in ROWS])
def test_row(case, model, call, expected):
    before = state(model)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        if expected[0] == 'refused':
            with pytest.raises((ValueError, TypeError)) as e: call(model)
            msg = str(e.value)
            assert expected[1] in msg, msg
            assert '\n' not in msg, msg                                             # one line
            last = traceback.extract_tb(e.value.__traceback__)[-1].filename
            assert '/lbsharp/' in last and '/torch/' not in last, f"raised in {last}: {msg}"   # lbsharp's message, not a raw one
        else:
            got = call(model)
            ref, read = expected[1](), expected[2]
            assert read(got) == read(ref), (read(got), read(ref))                # bitwise: the very same computation
    text = [str(x.message) for x in w]
    assert not [t for t in text if 'target size' in t or 'broadcast' in t], text  # no silent broadcasting of a target
    low = {p.dtype for p in model.parameters()} & {torch.float16, torch.bfloat16}
    if low and expected[0] == 'value': assert sum('measures it in float32' in t for t in text) == 1, text   # said once
    assert same(state(model), before), f"{case}: the model changed"

@pytest.mark.parametrize('dt', [torch.float16, torch.bfloat16])
def test_low_precision_recorded(dt):
    "The dtype measured in and the model's own travel with each result (and its JSON)."
    m = copy.deepcopy(MODEL).to(dt)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r, h, l = S(m, (X, Y), **KW), H(m, (X, Y)), L(m, (X, Y))
    own = str(dt).removeprefix('torch.')
    assert (r.dtype, r.model_dtype) == ('float32', own) and r.to_dict()['model_dtype'] == own
    assert (h.dtype, h.model_dtype) == ('float32', own) and h.to_dict()['model_dtype'] == own
    assert (l['settings']['dtype'], l['settings']['model_dtype']) == ('float32', own)
    r32 = S(MODEL, (X, Y), **KW)
    assert (r32.dtype, r32.model_dtype) == ('float32', 'float32')
    assert abs(r.phi - r32.phi) < 0.05*r32.phi      # the rounded weights' φ is the float32 φ's neighbour (0.092/0.74 before)

def test_mean_loss_f0():
    "A loss without `reduction` is read as the batch mean: f0 is the mean loss, not the mean divided by the batch."
    r = S(MODEL, (X, Y), loss_fn=mean_only, **KW)
    with torch.no_grad(): assert abs(r.f0 - float(F.cross_entropy(MODEL(X), Y))) < 1e-6
