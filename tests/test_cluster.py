"""Sweeps through submitit: the local executor's jobs give the serial run's results bit for bit, and a worker killed
mid-run is retried (resuming from its checkpoint) with no duplicate, torn or leftover file; a rerun recomputes nothing.

Each job is a real subprocess (submitit's local executor). The experiment is `quick` shrunk to seconds: 2 trials of
3 epochs on 1,000 MNIST-1D samples, one ε, a 5-dimensional subspace, 2 L-BFGS-B iterations, 3 landscape points.

The thread count changes the arithmetic (torch splits reductions over threads), so the serial reference runs on
the same number of threads as each job: 1, pinned both ways (the jobs by `threads=1` and `OMP_NUM_THREADS=1`,
which the CLI's jobs inherit, capped by `job_threads`; the serial run by `torch.set_num_threads(1)`).
"""
import os, sys, json, time, signal, subprocess
from pathlib import Path
import pytest, torch

pytest.importorskip('submitit')
ROOT = Path(__file__).resolve().parent.parent
THREADS = 1   # threads per process, both ways
SETS = dict(trials=2, epochs=3, data_kw={'n_samples': 1000}, eps=[1e-3], p=5, sharp_iters=2, alphas=3)

def tiny():
    from lbsharp.presets import preset
    return preset('quick', **SETS)

def _strip(o):
    "A stored JSON without what legitimately differs between runs: timings and the environment (pid-free anyway)."
    if isinstance(o, dict): return {k: _strip(v) for k, v in o.items() if 'seconds' not in k and k != 'environment'}
    if isinstance(o, list): return [_strip(v) for v in o]
    return o

def files(out):
    "The store's files (not the job logs in .submitit, nor the report the CLI draws from the store)."
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob('*') if '.submitit' not in p.parts
                  and (p.suffix in ('.json', '.pt', '.lock', '.tmp') or p.name.startswith('.')))

def assert_same(a, b):
    "Two results directories hold the same files and the same numbers (bit for bit: JSON equality, torch.equal)."
    assert files(a) == files(b)
    for f in files(a):
        if f.endswith('.json'):
            assert _strip(json.loads((a/f).read_text())) == _strip(json.loads((b/f).read_text())), f
        elif f.endswith('.pt'):
            x, y = (torch.load(d/f, weights_only=True)['state'] for d in (a, b))
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), f

@pytest.fixture(scope='module')
def serial(tmp_path_factory):
    from lbsharp.experiments import run
    n = torch.get_num_threads(); torch.set_num_threads(THREADS)
    try: return run(tiny(), tmp_path_factory.mktemp('serial')/'r', quiet=True)
    finally: torch.set_num_threads(n)

def test_local_jobs_equal_serial(serial, tmp_path):
    from lbsharp.cluster import submit
    out = submit(tiny(), tmp_path/'r', 'local', jobs=2, threads=THREADS, quiet=True)
    assert_same(serial, out)
    runs = sorted(out.glob('trial*/result.json'))
    assert runs and all(json.loads(f.read_text())['environment']['threads'] == THREADS for f in runs)
    log = json.loads(next((out/'.submitit').glob('jobs-*.json')).read_text())
    assert log['threads'] == THREADS and len(log['log']) == 5 and all(r['submitted'] <= r['started'] <= r['ended'] for r in log['log'])
    assert not (out/'.claims').exists() and not list(out.rglob('*.tmp'))
    # the units ran in separate processes: one submitit job folder per unit (4 runs + 1 landscape)
    assert len(list((out/'.submitit').glob('*_submitted.pkl'))) == 5

def _cli(out, *extra):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'LBSHARP_QUIET': '1', 'PYTHONPATH': str(ROOT)}
    sets = [a for k, v in SETS.items() for a in ('--set', f'{k}={json.dumps(v)}')]
    return subprocess.Popen([sys.executable, '-c', 'import sys; from lbsharp.cli import main; sys.exit(main())', 'run', 'quick',
                             '--out', str(out), '--executor', 'local', '--jobs', '2', '--quiet', *sets, *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def test_killed_worker_is_retried_and_rerun_recomputes_nothing(serial, tmp_path):
    out = tmp_path/'r'
    p = _cli(out)
    killed, t0 = None, time.time()
    while killed is None and p.poll() is None and time.time() - t0 < 600:   # wait for a job to be mid-training
        for lock in (out/'.claims').glob('run-*.lock') if (out/'.claims').exists() else []:
            try: owner = json.loads(lock.read_text())
            except (OSError, json.JSONDecodeError): continue
            ck = out/lock.stem.replace('run-', '', 1)/'checkpoints'
            if ck.exists() and any(ck.glob('epoch_*.pt')):
                os.kill(owner['pid'], signal.SIGKILL); killed = lock.stem; break
        time.sleep(0.05)
    so, se = p.communicate(timeout=900)
    assert killed, "no job was caught mid-training"
    assert p.returncode == 0, so[-2000:] + se[-3000:]
    assert_same(serial, out)                                       # retried from its checkpoint: the same numbers
    assert not (out/'.claims').exists() and not list(out.rglob('*.tmp')) and not list(out.rglob('checkpoints'))
    # the killed unit was submitted twice, every other unit once
    assert len(list((out/'.submitit').glob('*_submitted.pkl'))) == 6
    before = {f: (out/f).stat().st_mtime_ns for f in files(out)}
    p = _cli(out); so, se = p.communicate(timeout=600)
    assert p.returncode == 0, se[-3000:]
    assert {f: (out/f).stat().st_mtime_ns for f in before} == before    # nothing recomputed or rewritten
    assert 'Table 2' in so

def test_two_claims_one_winner(tmp_path):
    "Concurrent claimers of one unit: exactly one gets it (O_EXCL), the others are told it is busy."
    code = ("import sys, time; from pathlib import Path; from lbsharp.experiments import claim_unit, UnitBusy\n"
            "d = Path(sys.argv[1]); (d/f'ready{sys.argv[2]}').touch()\n"
            "while not (d/'go').exists(): time.sleep(0.001)\n"
            "try: claim_unit(d, ('run', 0, 'SB'))\n"
            "except UnitBusy: print('busy'); sys.exit()\n"
            "print('won', flush=True)\n"
            "while not (d/'release').exists(): time.sleep(0.01)   # hold the claim until every rival has tried\n")
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    ps = [subprocess.Popen([sys.executable, '-c', code, str(tmp_path), str(i)], env=env, stdout=subprocess.PIPE, text=True)
          for i in range(4)]
    while len(list(tmp_path.glob('ready*'))) < 4: time.sleep(0.01)
    (tmp_path/'go').touch()
    while sum(p.poll() is not None for p in ps) < 3 and all(p.poll() in (None, 0) for p in ps): time.sleep(0.01)
    (tmp_path/'release').touch()
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in ps)
    assert outs == ['busy', 'busy', 'busy', 'won'], outs
