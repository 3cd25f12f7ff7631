"""The CLI as a user meets it: the console script in a pseudo-terminal with bars on, and `lbsharp sharpness`
remeasuring a finished run on the run's own f."""
import json, os, sys
from pathlib import Path
import pytest
sys.path.insert(0, str(Path(__file__).parent))
from _terminal import run_in_pty, screen
from lbsharp.cli import main, _parser, _sharpness

ROOT = Path(__file__).resolve().parents[1]
TINY = ['--set', 'trials=1', '--set', 'epochs=2', '--set', 'data_kw={"n_samples": 1000}', '--set', 'eps=0.001',
        '--set', 'p=5', '--set', 'sharp_iters=2', '--set', 'alphas=3']

def _lbsharp():
    exe = Path(sys.executable).parent/'lbsharp'      # the console script pip installed, as the README runs it
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from lbsharp.cli import main; sys.exit(main())']

def test_run_in_a_terminal_with_bars(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'LBSHARP_QUIET'}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    rc, raw = run_in_pty(_lbsharp() + ['run', 'quick', '--out', str(tmp_path/'r')] + TINY, env)
    lines = screen(raw)
    assert rc == 0, raw[-3000:]
    assert 'Traceback' not in raw and 'error' not in raw.lower(), raw[-3000:]
    assert 'run-trial0-SB · epochs (batch 64) |' in raw and 'run-trial0-LB · epochs (batch 150) |' in raw, raw[-3000:]  # SB, LB children
    assert 'run-trial0-SB · φ full ε=0.001' in raw and 'landscape-trial0 · landscape points |' in raw, raw[-3000:]
    assert any(l.startswith('unit 1/2 run-trial0-SB done in') for l in lines), lines
    for t in ('Table 2', 'Table 3', 'Table 4'): assert t in lines, lines
    heads = [l for l in lines if l.startswith('| network |')]
    assert len(heads) == 3 and 'φ ε=0.001' in heads[1] and 'train loss' in heads[1] and '‖∇f‖' in heads[1], heads
    assert any(l.startswith('Report:') for l in lines) and (tmp_path/'r'/'report.md').exists()
    reading = [l for l in lines if l.startswith('Reading. Agrees with the paper:')]
    assert len(reading) == 1 and 'not one of the paper' in reading[0], lines   # mlp-mnist1d has no paper row: said plainly

@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp('quick')/'r'
    assert main(['run', 'quick', '--out', str(out), '--quiet', '--set', 'sharp_subset=300', '--set', 'landscape_trials=[]'] + TINY) == 0
    return out

@pytest.mark.parametrize('space', ['full', 'subspace'])
def test_sharpness_command_remeasures_the_stored_phi(finished, space, capsys):
    stored = json.loads((finished/'trial0-LB'/f'sharpness-{space}-0.001.json').read_text())['result']
    args = [str(finished/'trial0-LB'/'model.pt')] + (['--p', '5'] if space == 'subspace' else [])
    r = _sharpness(_parser().parse_args(['sharpness'] + args))
    out = capsys.readouterr().out
    assert '300 of 800 samples' in out and 'MNIST-1D' in out and "{'n_samples': 1000}" in out and 'experiment.json' in out, out
    assert (r.n_samples, r.subset, r.iters, r.eps) == (stored['n_samples'], 300, 2, 0.001)
    assert abs(r.phi - stored['phi']) <= 1e-6*abs(stored['phi']), (r.phi, stored['phi'])

def test_sharpness_json_records_the_result_and_its_provenance(finished, tmp_path, capsys):
    f = tmp_path/'deep'/'lb.json'
    r = _sharpness(_parser().parse_args(['sharpness', str(finished/'trial0-LB'/'model.pt'), '--solver', 'sum', '--json', str(f)]))
    d = json.loads(f.read_text())
    assert (d['kind'], d['result']['solver'], d['result']['phi']) == ('sharpness', 'sum', r.phi), d['result']
    assert d['model'].endswith('trial0-LB/model.pt') and '300 of 800 samples' in d['f'] and 'experiment.json' in d['f'], d
    assert {'git_commit', 'torch', 'threads', 'numerics'} <= set(d['environment']), d['environment']
    assert f'wrote {f}' in capsys.readouterr().out

def test_sharpness_subset_all_overrides_the_run(finished, capsys):
    r = _sharpness(_parser().parse_args(['sharpness', str(finished/'trial0-SB'/'model.pt'), '--subset', 'all']))
    assert r.n_samples == 800 and r.subset is None and '800 of 800 samples' in capsys.readouterr().out

def test_programming_errors_keep_their_traceback(monkeypatch, finished):
    import lbsharp.cli as cli
    monkeypatch.setattr(cli, 'report', lambda *a: {}['no such key'])
    with pytest.raises(KeyError): main(['report', str(finished)])

def test_train_as_a_user_runs_it(tmp_path):
    "`python -m lbsharp.cli train` (the module torchrun launches): '1.0' is the whole set; a bad batch is refused, exit 2, nothing written."
    import subprocess
    pytest.importorskip('sklearn')
    env = {**os.environ, 'LBSHARP_QUIET': '1', 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH')) if p)}
    cmd = [sys.executable, '-m', 'lbsharp.cli', 'train', '--net', 'mlp-digits', '--data', 'digits', '--bn', 'none', '--epochs', '1']
    sh = lambda *a: subprocess.run(cmd + list(a), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    r = sh('--batch', '1.0', '--out', 'h.json')
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == 'wrote h.json', r.stdout + r.stderr
    h = json.loads((tmp_path/'h.json').read_text())
    assert (h['config']['batch'], h['config']['batch_size'], h['log'][-1]['updates']) == (1.0, 1437, 1)   # one update per epoch
    for bad, want in (('0', 'lbsharp train: error: batch=0 must lie in [1, 1437]'),
                      ('ten', "lbsharp train: error: argument --batch: 'ten': a number of samples written as an integer")):
        r = sh('--batch', bad, '--out', 'bad.json')
        assert r.returncode == 2 and want in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['h.json']
