"""Every bad input of issue #24, one row each: first the CLI, experiments, store and executor side, then (at the end of
this file) the public API. A row is the input, the message fragment the user must see, the exit status, and what is left
on disk. Each row runs as a user runs it: `lbsharp.cli.main` (the console script's entry point, in this process: what it
prints and returns is what the shell shows) or, where a real process matters (Ctrl-C, a job's worker, the console script
itself), a subprocess. Every row asserts a clear message, no traceback, the exit status, and that nothing was trained or
written where a check should have stopped the run: validation costs seconds, not a training run."""
from pathlib import Path
import json, os, shutil, signal, socket, subprocess, sys, time
import pytest, torch

from lbsharp.cli import main
from lbsharp.experiments import save_model, run, validate, load_model
from lbsharp.store import read_json
from lbsharp.presets import preset
from lbsharp.cluster import submit
from lbsharp.networks import build

ROOT = Path(__file__).resolve().parents[1]
SMALL = {'trials': 1, 'epochs': 1, 'data_kw': {'n_samples': 1000}, 'eps': [0.001], 'p': 0, 'sharp_iters': 1, 'landscape_trials': []}
def sets(**kw): return [a for k, v in {**SMALL, **kw}.items() for a in ('--set', f'{k}={json.dumps(v)}')]
def files(d:Path)->list: return sorted(str(f.relative_to(d)) for f in d.rglob('*')) if d.exists() else []

@pytest.fixture(autouse=True, scope='module')
def data_dir(tmp_path_factory):
    "MNIST-1D caches of this module in a directory of its own (one row truncates one)."
    old = os.environ.get('LBSHARP_DATA'); os.environ['LBSHARP_DATA'] = str(tmp_path_factory.mktemp('data'))
    yield Path(os.environ['LBSHARP_DATA'])
    if old is None: os.environ.pop('LBSHARP_DATA')
    else: os.environ['LBSHARP_DATA'] = old

def cli(capfd, *args)->tuple[int, str]:
    "Run `lbsharp ARGS` through the console script's entry point: (exit status, everything printed)."
    rc = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return rc, out + err

def console(*args, env=None, **kw)->subprocess.Popen:
    "The console script in its own process, as the README runs it."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'LBSHARP_QUIET': '1', 'PYTHONPATH': str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, '-c', 'import sys; from lbsharp.cli import main; sys.exit(main())', *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

def clear(text:str, *fragments):
    assert 'Traceback' not in text, text[-3000:]
    for f in fragments: assert f in text, (f, text[-3000:])

# ---- Bad settings: refused before any unit starts, nothing left behind -------------------------------------------------
BAD_SETTINGS = [   # --set overrides of `lbsharp run quick`, the message fragment
    (dict(regimes={'SB': 64, 'LB': 20000}), "regimes['LB']: batch=20000 must lie in [1, 800]"),
    (dict(eps=-1), 'every ε must be a number > 0'),
    (dict(eps=0), 'every ε must be a number > 0'),
    (dict(p=-5), 'p=-5 must be an int >= 0'),
    (dict(eps=[]), 'eps=[] measures nothing'),
    (dict(regimes={'SB': 64, 'LB': 'big'}), "regimes['LB']='big' must be a batch size"),
    (dict(trials=0), 'trials=0 must be an int >= 1'),
    (dict(trials=-1), 'trials=-1 must be an int >= 1'),
    (dict(network='F1'), 'the network F1 (input shape (1, 28, 28)) does not fit the data set \'mnist1d\' (input shape (40,))'),
    (dict(dataset='cifar10', network='C1', data_kw={}), 'cifar10: data files not found'),
    (dict(data_kw={'n_sample': 1000}), "unknown option(s) ['n_sample']"),
    (dict(remedy='sma'), "unknown remedy 'sma'"),
    (dict(bn='bach'), "bn='bach' is unknown"),
] + ([] if torch.cuda.is_available() else [(dict(device='cuda'), "device='cuda': this machine has no usable CUDA GPU")])

@pytest.mark.parametrize('kw,msg', BAD_SETTINGS, ids=[json.dumps(k) for k, _ in BAD_SETTINGS])
def test_bad_setting_is_refused_before_work(kw, msg, tmp_path, capfd, data_dir):
    rc, text = cli(capfd, 'run', 'quick', '--out', tmp_path/'r', '--quiet', *sets(**kw))
    assert rc == 2, text
    clear(text, 'lbsharp run: error:', msg)
    assert not (tmp_path/'r').exists()                              # nothing trained, nothing claimed
    rc, text = cli(capfd, 'run', 'quick', '--out', tmp_path/'r', '--quiet', '--executor', 'local', *sets(**kw))
    assert rc == 2 and msg in text and not (tmp_path/'r').exists(), text   # the executor path checks the same, before any job

def test_bad_setting_through_the_console_script(tmp_path):
    p = console('run', 'quick', '--out', tmp_path/'r', *sets(eps=[]))
    out, err = p.communicate(timeout=300)
    assert p.returncode == 2, err
    clear(err, "lbsharp run: error: experiment 'quick': eps=[] measures nothing")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path/'r').exists(), err   # one line, nothing left

@pytest.mark.parametrize('fn', ['run', 'submit'])
def test_library_validates_before_writing(fn, tmp_path):
    exp = preset('quick', **{**SMALL, 'eps': ()})
    with pytest.raises(ValueError, match='eps=\\[\\] measures nothing'):
        run(exp, tmp_path/'r', quiet=True) if fn == 'run' else submit(exp, tmp_path/'r', 'local', quiet=True)
    assert not (tmp_path/'r').exists()

def test_a_good_setting_passes_validation():
    assert len(validate(preset('quick', **{**SMALL, 'eps': (0.001,), 'landscape_trials': ()})).Xtr) == 800

# ---- Raw tracebacks where a sentence is due ------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    "A finished tiny run of `quick` (1 trial, 1 epoch, ε=1e-3 only): made through the CLI."
    out = tmp_path_factory.mktemp('fin')/'r'
    assert main(['run', 'quick', '--out', str(out), '--quiet', *sets()]) == 0
    return out

@pytest.fixture
def copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path/'r'); return tmp_path/'r'

def _mnist1d_model(path):
    return save_model(build('mlp-mnist1d'), path)

MODEL_CASES = {   # name: (how to make the model file and the arguments, message fragments)
    'F1 model in an MNIST-1D run directory':
        (lambda d: (save_model(build('F1'), d/'trial0-SB'/'model.pt'), []),
         ['does not fit the data set', 'network F1 (input shape (1, 28, 28))', '(input shape (40,))']),
    'MNIST-1D model measured on digits':
        (lambda d: (_mnist1d_model(d.parent/'m.pt'), ['--dataset', 'digits']),
         ['network mlp-mnist1d (input shape (40,)) does not fit', "'digits'", '(input shape (1, 8, 8))']),
    'spec widths that do not match the weights':
        (lambda d: (save_model(build('mlp-mnist1d', width=32), d.parent/'w.pt'), []), None),
    'a text file named model.pt':
        (lambda d: ((d/'trial0-SB'/'model.pt').write_text('not a model\n'), []),
         ['not a readable lbsharp model file: expected a PyTorch file written by torch.save', "delete the run's directory"]),
    'a truncated model.pt in a finished run':
        (lambda d: ((d/'trial0-SB'/'model.pt').write_bytes((d/'trial0-SB'/'model.pt').read_bytes()[:300]), []),
         ['torch.load fails', "delete the run's directory", 'rerun the same `lbsharp run` command']),
    'a deleted model.pt in a finished run':
        (lambda d: ((d/'trial0-SB'/'model.pt').unlink(), []),
         ['no model file', "its run is marked finished", "delete the run's directory"]),
}

@pytest.mark.parametrize('case', list(MODEL_CASES))
def test_model_that_does_not_fit_says_so(case, copy, capfd):
    make, msg = MODEL_CASES[case]
    _, extra = make(copy)
    model = {'MNIST-1D model measured on digits': copy.parent/'m.pt', 'spec widths that do not match the weights': copy.parent/'w.pt'}.get(
        case, copy/'trial0-SB'/'model.pt')
    if case == 'spec widths that do not match the weights':   # the spec says 256 wide, the weights are 32 wide
        ck = torch.load(model, weights_only=True); ck['spec']['width'] = 256; torch.save(ck, model)
        msg = ['its weights do not fit the network its spec describes (mlp-mnist1d with width=256', 'size mismatch']
    before = files(copy)
    rc, text = cli(capfd, 'sharpness', model, *extra)
    assert rc == 2, text
    clear(text, 'lbsharp sharpness: error:', *msg)
    assert files(copy) == before                                     # nothing written

def test_truncated_model_way_out_works(copy, capfd):
    "The advice for a finished run whose model.pt is broken, followed to the letter, gives the run back: the same φ."
    phi = read_json(copy/'trial0-SB'/'sharpness-full-0.001.json', 'sharpness')['result']['phi']
    (copy/'trial0-SB'/'model.pt').write_bytes(b'PK\x03\x04 truncated')
    rc, text = cli(capfd, 'sharpness', copy/'trial0-SB'/'model.pt')
    assert rc == 2 and f"delete the run's directory {copy/'trial0-SB'}" in text, text
    shutil.rmtree(copy/'trial0-SB')                                   # as advised ...
    rc, text = cli(capfd, 'run', 'quick', '--out', copy, '--quiet', *sets())   # ... and the same command again
    assert rc == 0, text
    load_model(copy/'trial0-SB'/'model.pt')
    assert read_json(copy/'trial0-SB'/'sharpness-full-0.001.json', 'sharpness')['result']['phi'] == phi   # trained again: the same run
    rc, text = cli(capfd, 'sharpness', copy/'trial0-SB'/'model.pt')
    assert rc == 0 and 'Traceback' not in text, text

@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a GPU')
def test_sharpness_on_a_missing_gpu_says_so(finished, capfd):
    rc, text = cli(capfd, 'sharpness', finished/'trial0-SB'/'model.pt', '--device', 'cuda')
    assert rc == 2, text
    clear(text, "device='cuda': this machine has no usable CUDA GPU")
    assert 'not a readable' not in text

def test_truncated_mnist1d_cache_is_generated_again(data_dir, finished, capfd):
    caches = sorted((data_dir/'mnist1d').glob('*.npz'))
    assert caches, list(data_dir.rglob('*'))
    for f in caches: f.write_bytes(f.read_bytes()[:1000])            # BadZipFile on every read
    rc, text = cli(capfd, 'sharpness', finished/'trial0-SB'/'model.pt', '--iters', '1')
    assert rc == 0, text
    clear(text, 'phi=')
    for f in caches: assert len(f.read_bytes()) > 1000               # written again, whole

@pytest.mark.skipif(not Path('/sys').is_dir(), reason='needs a directory no one may write: /sys')
def test_read_only_output_directory(capfd):
    out = Path('/sys/lbsharp-test/r')                                 # not writable, not even by root
    rc, text = cli(capfd, 'run', 'quick', '--out', out, '--quiet', *sets())
    assert rc == 2, text
    clear(text, 'lbsharp run: error: permission denied for /sys/lbsharp-test', 'choose an output directory you may write (--out')
    assert not out.exists()

def test_ctrl_c_says_the_run_resumes(tmp_path):
    out = tmp_path/'r'
    p = console('run', 'quick', '--out', out, *sets(epochs=200, max_epochs=200), start_new_session=True)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 300 and not list(out.glob('trial0-*/checkpoints/epoch_*.pt')): time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)                                      # what Ctrl-C sends
    so, se = p.communicate(timeout=120)
    assert p.returncode == 130, se[-3000:]
    clear(se, 'lbsharp run: interrupted', 'rerun the same command to resume')
    assert len([l for l in se.splitlines() if l.strip()]) == 1, se
    assert (out/'experiment.json').exists() and not (out/'.claims').exists()   # resumable, no claim left behind

# ---- The store must not mislabel results ---------------------------------------------------------------------------------
def test_empty_experiment_json_then_other_settings_are_refused(copy, capfd):
    (copy/'experiment.json').write_text('')
    rc, text = cli(capfd, 'run', 'quick', '--out', copy, '--quiet', *sets())
    assert rc == 2, text
    clear(text, 'experiment.json is not valid JSON', 'delete it')
    (copy/'experiment.json').unlink()                                 # as advised; then other settings:
    before = files(copy)
    rc, text = cli(capfd, 'run', 'quick', '--out', copy, '--quiet', *sets(max_epochs=3))
    assert rc == 2, text
    clear(text, 'result.json was computed with other settings', "fields ['max_epochs'] differ", 'max_epochs=300 there, 3 here')
    assert files(copy) == before                                      # the directory is not tied to the refused settings
    rc, text = cli(capfd, 'run', 'quick', '--out', copy, '--quiet', *sets())   # the original settings still resume it
    assert rc == 0 and (copy/'experiment.json').exists(), text

def test_every_result_carries_its_settings_and_cpu(finished):
    exp = read_json(finished/'experiment.json', 'experiment')['experiment']
    for f in finished.glob('*/result.json'):
        r = read_json(f, 'run')
        assert r['settings'] == exp, f
        assert r['environment']['cpu_arch'] and isinstance(r['environment']['cpu_flags'], list), r['environment']   # which float kernels ran
    for f in finished.glob('*/sharpness-*.json'): assert 'cpu_vendor' in read_json(f, 'sharpness')['environment'], f

def test_a_stored_measurement_with_other_settings_is_not_reused(copy, capfd):
    "A killed run's sharpness file (no result.json yet) measured with other settings: refused, not relabelled."
    for f in [copy/'experiment.json', *copy.glob('*/result.json')]: f.unlink()
    rc, text = cli(capfd, 'run', 'quick', '--out', copy, '--quiet', *sets(sharp_iters=2))
    assert rc == 2, text
    clear(text, 'sharpness-full-0.001.json was measured with other settings (iters=1 there, 2 here)', 'delete it')

# ---- --executor local: the worker's own error, its log, and what to do -----------------------------------------------------
def test_failed_job_shows_the_worker_error_and_its_log(tmp_path):
    out = tmp_path/'r'; (out/'.claims').mkdir(parents=True)
    (out/'.claims'/'run-trial0-SB.lock').write_text(json.dumps(dict(host=socket.gethostname(), pid=os.getpid())))   # held by a live process
    p = console('run', 'quick', '--out', out, '--executor', 'local', '--jobs', '1', *sets(regimes={'SB': 64}))
    so, se = p.communicate(timeout=300)
    assert p.returncode == 2, se[-3000:]
    clear(se, 'run-trial0-SB: UnitBusy: run-trial0-SB is claimed by', '_log.err)', 'wait until it ends',
          f"each job's log is {out/'.submitit'}")
    assert 'FailedJobError' not in se and 'resume' not in se, se
    assert not (out/'trial0-SB').exists()                            # the busy unit was left to its owner


# ==== The public API (silent wrong numbers, and the batch/loss contract of #27) ====================
# Issue #24 ("silent wrong numbers from the public API") and the batch/loss contract of #27, one row per case.
#
# Every row runs the public API as a user would (`import lbsharp as lbs`) on the README's model and data, and asserts
# either the number (equal to the float32 / mean-loss / tensor-pair answer it must be) or a clear refusal: a
# ValueError/TypeError raised by lbsharp itself, on one line, containing the fragment that says what to do.
# Every row also checks that the user's model comes back exactly as given (dtype, weights, gradients, mode).

import copy as copy_mod, traceback, warnings
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

def f32(m): return copy_mod.deepcopy(m).float()              # the float32 model at exactly the (rounded) low-precision weights

def phi(r): return r.phi
def top(r): return r.top
def line(r): return r['train']['loss']

S, H, L = lbs.sharpness, lbs.hessian_spectrum, lambda *a, **k: lbs.landscape(*a, coords=[-1, 0, 1], quiet=True, **k)
HALF, BF16 = copy_mod.deepcopy(MODEL).half(), copy_mod.deepcopy(MODEL).bfloat16()

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
    ('hessian tuple output, eval-mode model', Wrap('tuple', nn.Sequential(copy_mod.deepcopy(MODEL), nn.Dropout(0.5))).eval(), lambda m: H(m, (X, Y)),
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
    m = copy_mod.deepcopy(MODEL).to(dt)
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
