"""Every bad input of issue #24 (CLI, experiments, store, executor side), one row each: the input, the message fragment
the user must see, the exit status, and what is left on disk. Each row runs as a user runs it: `lbsharp.cli.main` (the
console script's entry point, in this process: what it prints and returns is what the shell shows) or, where a real
process matters (Ctrl-C, a job's worker, the console script itself), a subprocess. Every row asserts a clear message,
no traceback, the exit status, and that nothing was trained or written where a check should have stopped the run:
validation costs seconds, not a training run."""
from pathlib import Path
import json, os, shutil, signal, socket, subprocess, sys, time
import pytest, torch

from lbsharp.cli import main
from lbsharp.experiments import save_model, read_json, run, preset, validate, load_model
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
