"""A sweep killed mid-way and restarted finishes with the same numbers, no duplicates and no torn files."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

TINY = ['--set', 'trials=2', '--set', 'epochs=4', '--set', 'data_kw={"n_samples": 1000}', '--set', 'eps=[0.001]',
        '--set', 'p=10', '--set', 'sharp_iters=3', '--set', 'alphas=5', '--quiet']

LBSHARP = str(Path(sys.executable).parent/'lbsharp')  # the console script installed with the package

def _cmd(out): return [LBSHARP, 'run', 'quick', '--out', str(out), *TINY]

def _numbers(out):
    res = {}
    for f in sorted(Path(out).glob('*/result.json')):
        r = json.loads(f.read_text())
        final = {k: v for k, v in r['final'].items() if 'seconds' not in k}
        res[f.parent.name] = (final, [m['phi'] for m in r['sharpness']], r['dist_from_x0'])
    for f in sorted(Path(out).glob('trial*-linear.json')):
        res[f.name] = json.loads(f.read_text())['result']['train']['loss']
    return res

def test_kill_and_resume(tmp_path):
    env = {**os.environ, 'LBSHARP_QUIET': '1'}
    subprocess.run(_cmd(tmp_path/'ref'), check=True, env=env, capture_output=True)
    p = subprocess.Popen(_cmd(tmp_path/'k'), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = tmp_path/'k'/'trial1-SB'/'checkpoints'   # mid-way: trial 0 finished, trial 1 training
    t0 = time.time()
    while not any(target.glob('epoch_0002.pt')) and p.poll() is None and time.time() - t0 < 120: time.sleep(0.01)
    assert p.poll() is None, "the run finished before it could be killed; make the tiny run longer"
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (tmp_path/'k'/'trial1-LB'/'result.json').exists()
    subprocess.run(_cmd(tmp_path/'k'), check=True, env=env, capture_output=True)
    assert _numbers(tmp_path/'k') == _numbers(tmp_path/'ref')
    assert sorted(p.name for p in (tmp_path/'k').iterdir()) == sorted(p.name for p in (tmp_path/'ref').iterdir())
    assert not list((tmp_path/'k').rglob('*.tmp')), "temporary files left behind"
