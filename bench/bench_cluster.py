"""Wall time of `lbsharp run PRESET` serially vs with `--executor local --jobs N`, side by side, median of `--reps`.

    python bench/bench_cluster.py [--reps 3] [--jobs 2] [--threads T] [--set KEY=VALUE ...] [--code DIR]

Both are the CLI in a fresh process (so both pay one interpreter start-up), into fresh directories, alternating which
goes first. Both run with OMP_NUM_THREADS=T, T = cores // jobs by default (`lbsharp.cluster.job_threads`): the serial
process and every job use T threads, so the two stores must hold the same numbers, and this is checked. `--threads 0`
leaves OMP_NUM_THREADS unset (torch's default, a thread per core in every process: the behaviour before threads per job;
the numbers then differ and are not compared). `--code DIR` runs another checkout's lbsharp (e.g. the code before a change).

Prints each time (wall, and CPU seconds of the process and its jobs: CPU/wall is how many cores the run got), the
medians and their ratio, and the per-job costs read from the jobs' log (`.submitit/jobs-*.json`):
start-up (submitted -> the job's code runs: interpreter, `import torch`, lbsharp, unpickling), the unit's own time, and
the lag until the parent sees the job finished; plus the data load every job repeats. Time it on a quiet machine.
Default: the full `quick` preset (3 trials: 6 runs and 1 landscape).
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument('--preset', default='quick')
p.add_argument('--reps', type=int, default=3)
p.add_argument('--jobs', type=int, default=2)
p.add_argument('--threads', type=int, help="threads per process, both ways (default: cores // jobs; 0: OMP_NUM_THREADS unset)")
p.add_argument('--set', action='append', default=[])
p.add_argument('--code', help="the lbsharp checkout to run (default: this one)")
p.add_argument('--keep', help="keep the stores under this directory")
a = p.parse_args()
code = Path(a.code or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(code))
from lbsharp.experiments import load_data
from lbsharp.presets import preset
from lbsharp.cli import parse_sets
try: from lbsharp.cluster import job_threads
except ImportError: job_threads = lambda j: max(1, len(os.sched_getaffinity(0)) // j)
T = job_threads(a.jobs) if a.threads is None else a.threads

env = {**os.environ, 'LBSHARP_QUIET': '1', 'PYTHONPATH': str(code)}
env.pop('OMP_NUM_THREADS', None)
if T: env['OMP_NUM_THREADS'] = str(T)
sets = [x for s in a.set for x in ('--set', s)]
def cpu():
    u = resource.getrusage(resource.RUSAGE_CHILDREN); return u.ru_utime + u.ru_stime
def cli(out, *extra):
    "Wall and CPU seconds of one CLI run (CPU: the process and every descendant it waited for, i.e. the jobs)."
    t, c = time.perf_counter(), cpu()
    r = subprocess.run([sys.executable, '-c', 'import sys; from lbsharp.cli import main; sys.exit(main())', 'run', a.preset,
                        '--out', str(out), '--quiet', *sets, *extra], env=env, capture_output=True, text=True)
    if r.returncode: sys.exit(f"{out}: exit {r.returncode}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t, cpu() - c

def strip(o):
    if isinstance(o, dict): return {k: strip(v) for k, v in o.items() if 'seconds' not in k and k != 'environment'}
    if isinstance(o, list): return [strip(v) for v in o]
    return o
def numbers(out): return {str(f.relative_to(out)): strip(json.loads(f.read_text())) for f in sorted(out.rglob('*.json'))
                          if '.submitit' not in f.parts and f.name != 'experiment.json'}

local = f'{a.jobs} local jobs'
times, cpus, jobrows = {'serial': [], local: []}, {'serial': [], local: []}, []
root = Path(a.keep or tempfile.mkdtemp()); root.mkdir(parents=True, exist_ok=True)
print(f"code {code}; {a.preset} {' '.join(a.set)}; threads per process: {T or 'unset (torch default)'}; "
      f"cores {len(os.sched_getaffinity(0))}", flush=True)
for r in range(a.reps):
    for k in (list(times) if r % 2 == 0 else list(times)[::-1]):
        out = root/f'{k.split()[0]}-{r}'
        w, c = cli(out) if k == 'serial' else cli(out, '--executor', 'local', '--jobs', str(a.jobs))
        times[k].append(w); cpus[k].append(c)
        print(f"rep {r}: {k:14s} {w:7.1f} s wall {c:7.1f} s CPU = {c/w:.2f} cores  (load average {os.getloadavg()[0]:.2f})", flush=True)
        if k != 'serial':
            for f in (out/'.submitit').glob('jobs-*.json'): jobrows += json.loads(f.read_text())['log']
    if T: assert numbers(root/f'serial-{r}') == numbers(root/f'{a.jobs}-{r}'), "serial and local stores differ"
m = {k: statistics.median(v) for k, v in times.items()}
res = dict(preset=a.preset, sets=a.set, threads=T or None, reps=a.reps, times_s=times, medians_s=m,
           speedup=m['serial']/m[local], same_numbers=bool(T), cpu_s=cpus, median_cpu_s={k: statistics.median(v) for k, v in cpus.items()},
           median_cores_used={k: round(statistics.median([c/w for c, w in zip(cpus[k], times[k])]), 2) for k in times})
if jobrows:
    med = lambda xs: round(statistics.median(xs), 2)
    res['per_job_s'] = dict(n=len(jobrows), start_up=med([j['started'] - j['submitted'] for j in jobrows]),
                            unit=med([j['ended'] - j['started'] for j in jobrows]), seen_after=med([j['seen'] - j['ended'] for j in jobrows]))
    if 'cpu_start_up' in jobrows[0]:
        res['per_job_cpu_s'] = dict(start_up=med([j['cpu_start_up'] for j in jobrows]), unit=med([j['cpu_unit'] for j in jobrows]))
t = time.perf_counter(); load_data(preset(a.preset, **parse_sets(a.set))); res['per_job_s_data_load'] = round(time.perf_counter() - t, 2)
print(json.dumps(res, indent=1))
