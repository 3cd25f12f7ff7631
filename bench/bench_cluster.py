"""Wall time of `quick` run serially (`lbsharp.experiments.run`) vs as submitit jobs on 2 local workers.

    OMP_NUM_THREADS=1 python bench/bench_cluster.py [--reps 3] [--set KEY=VALUE ...]

Each repetition runs both into fresh directories, alternating which goes first; prints each time, the medians and
their ratio, and checks that both stores hold the same numbers. Default override: 2 trials of 5 epochs on 2,000
MNIST-1D samples (seconds per unit, so process start-up is part of what is measured).
"""
import argparse, json, statistics, tempfile, time
from pathlib import Path
from lbsharp.experiments import preset, run, load_runs
from lbsharp.cluster import submit
from lbsharp.cli import parse_sets

p = argparse.ArgumentParser()
p.add_argument('--reps', type=int, default=3)
p.add_argument('--jobs', type=int, default=2)
p.add_argument('--set', action='append', default=[])
a = p.parse_args()
sets = dict(trials=2, epochs=5, data_kw={'n_samples': 2000}, eps=[1e-3], p=10, sharp_iters=5, alphas=5)
sets.update(parse_sets(a.set))
exp = preset('quick', **sets)
times = {'serial': [], f'{a.jobs} local workers': []}
for r in range(a.reps):
    order = list(times) if r % 2 == 0 else list(times)[::-1]
    for k in order:
        out = Path(tempfile.mkdtemp())/'r'
        t = time.perf_counter()
        if k == 'serial': run(exp, out, quiet=True)
        else: submit(exp, out, 'local', jobs=a.jobs, quiet=True)
        times[k].append(time.perf_counter() - t)
        print(f"rep {r}: {k:16s} {times[k][-1]:7.1f} s", flush=True)
        if k == 'serial': ref = [x['final'] for x in load_runs(out)[1]]
        else: assert [{**x['final'], 'train_seconds': 0} for x in load_runs(out)[1]] == [{**f, 'train_seconds': 0} for f in ref]
m = {k: statistics.median(v) for k, v in times.items()}
print(json.dumps(dict(settings=sets, medians_s=m, speedup=m['serial']/m[f'{a.jobs} local workers']), indent=1))
