"""The prepared GPU check of issue #27: one script, under 5 minutes on one GPU, for what only a GPU can show.

Run from the repository root whenever a device is lent (lbsharp from the checkout, e.g. `PYTHONPATH=$PWD`):

    python3 bench/bench_gpu.py [--out DIR] [--commit HASH] [--budget 270]
    OMP_NUM_THREADS=1 python3 bench/bench_gpu.py --tiny          # every section on the CPU, tiny sizes, C1 for C2 (a smoke test)

Sections (synthetic data of the real shapes, generated on the device: MNIST 1x28x28 for F1, CIFAR 3x32x32 for C2,
10 classes; speed does not depend on the values):
  [1] training throughput of `train()` for F1 and C2 vs the hand-written loops of bench/bench_training.py
      (samples/s, updates; ratio train()/fused hand loop, target >= 0.95); F1's training FLOP/s vs the fp32 GEMM peak
  [2] full-space eps-sharpness (eps 1e-3, 10 L-BFGS-B iterations) of C2 at its initial point on 50,000 CIFAR-shaped
      samples: seconds (target <= 30 s), iterations, evaluations, solver overhead (bench_sharpness.py's ratio, <= 1.15)
  [3] the p = 100 subspace with A generated on the device (gen='counter', streamed) vs full space, per evaluation of
      L-BFGS-B's objective at 15M parameters on the same 50,000 samples (target <= 1.2; bench_subspace.py measures the
      same ratio with both generators at small sample counts); the setup A^+x once per measurement
  [4] Hessian-vector products per gradient (F1 and C2): one product (`Hessian.mv`, target <= 2.2 gradients) and a batch
      of 8 (`Hessian.mm`, per product, target <= 2.0), counted products beside the seconds
  [5] if time is left: one subspace measurement end to end (`sharpness(p=100, gen='counter', starts=1)`), per evaluation
      against [2]'s full space

Times: the device is synchronised around every timed call (`torch.cuda.synchronize`), each path is warmed up first,
and numbers are medians of a few repeats. A hard wall-clock budget (--budget, default 270 s from the start of the
script) bounds the run: a section that would not fit in what is left is skipped with a printed note, and a timer
interrupts whatever runs at budget + 10 s, so the script always ends (under 5 minutes with the default) and always
writes its results. Results are rewritten after every section to DIR/bench_gpu-<gpu name>.txt and .json, with the
environment (commit, torch/CUDA versions, GPU, CPU, date, settings).
"""
from __future__ import annotations
import time
T0 = time.perf_counter()   # the budget counts from here (imports included)
import argparse, datetime, json, math, os, platform, re, signal, statistics, subprocess, sys, traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n', 2)[2])
    ap.add_argument('--out', default=None, help='folder for the results (default bench/results; /tmp/bench_gpu_tiny with --tiny)')
    ap.add_argument('--commit', default=os.environ.get('LBSHARP_COMMIT'),
                    help='git commit measured (default: env LBSHARP_COMMIT, else `git rev-parse HEAD`, else "unknown")')
    ap.add_argument('--budget', type=float, default=270., help='wall-clock budget in seconds, from the start of the script')
    ap.add_argument('--tiny', action='store_true', help='every section on the CPU with tiny sizes (a smoke test, not a measurement)')
    ap.add_argument('--device', default=None, help='torch device (default: cuda, or cpu with --tiny)')
    ap.add_argument('--only', default=None, help='comma-separated sections to run, of: ' + ','.join(['training', 'sharpness', 'subspace', 'products']))
    a = ap.parse_args(argv)
    if not (a.budget > 0 and math.isfinite(a.budget)): ap.error(f"--budget {a.budget} must be a positive number of seconds, e.g. 270")
    if a.only is not None:
        bad = sorted(set(a.only.split(',')) - set(SECTIONS))
        if bad: ap.error(f"--only {a.only!r}: unknown section(s) {bad}; use a comma-separated subset of {list(SECTIONS)}")
    return a


SECTIONS = ['training', 'sharpness', 'subspace', 'products', 'end-to-end']

# Sizes: the real ones, and the tiny ones of the CPU smoke run.
SIZES = dict(
    full=dict(cnn='C2', train_cases=[('F1', 60000, 10000, 6000, 1), ('F1', 12000, 2000, 256, 1),
                           ('C2', 50000, 10000, 5000, 1), ('C2', 10000, 2000, 256, 1)],  # (net, n_train, n_test, batch, epochs)
              train_repeats=3, train_frac=0.25, gemm=4096,
              sharp_n=50000, sharp_chunk=5000, sharp_iters=10, sharp_target=30., fg_repeats=3,
              sub_p=100, sub_repeats=3,
              prod=[('F1', 5000, 5000), ('C2', 1000, 500)], prod_k=8, prod_repeats=5),   # (net, samples, chunk)
    tiny=dict(cnn='C1', train_cases=[('F1', 128, 32, 64, 1), ('F1', 128, 32, 16, 1), ('C1', 32, 8, 16, 1), ('C1', 32, 8, 8, 1)],
              train_repeats=1, train_frac=0.35, gemm=256,
              sharp_n=64, sharp_chunk=32, sharp_iters=1, sharp_target=30., fg_repeats=1,
              sub_p=2, sub_repeats=1,
              prod=[('F1', 128, 128), ('C1', 16, 8)], prod_k=2, prod_repeats=1))
# --tiny swaps C2 (15M parameters: minutes per evaluation on one CPU core) for C1 (the paper's shallow CIFAR network):
# the same code paths, a network the CPU runs in seconds.

SHAPES = {'F1': ((1, 28, 28), False, 'MNIST'), 'C2': ((3, 32, 32), True, 'CIFAR'), 'C1': ((3, 32, 32), True, 'CIFAR')}   # shape, N(0,1) pixels?, name


class TimeUp(BaseException): "The hard wall-clock budget ran out (a BaseException: nothing in lbsharp swallows it)."


class Run:
    "Budget, log and results of one run; the files are rewritten after every section."
    def __init__(self, a, dev):
        self.a, self.dev, self.lines, self.sections = a, dev, [], {}
        self.env = environment(a, dev)
        slug = 'cpu-tiny' if a.tiny else re.sub(r'[^a-z0-9]+', '-', self.env['device_name'].lower()).strip('-')
        out = Path(a.out or ('/tmp/bench_gpu_tiny' if a.tiny else ROOT/'bench'/'results'))
        out.mkdir(parents=True, exist_ok=True)
        self.txt, self.json = out/f'bench_gpu-{slug}.txt', out/f'bench_gpu-{slug}.json'

    def left(self)->float: return self.a.budget - (time.perf_counter() - T0)
    def fits(self, need:float, what:str)->bool:
        "Whether `need` seconds fit in the budget (keeping 5 s to write); prints the skip note if not."
        if need <= self.left() - 5: return True
        self.log(f"    SKIPPED {what}: needs about {need:.0f} s, {max(0., self.left()):.0f} s of the {self.a.budget:.0f} s budget left")
        return False

    def log(self, s:str=''):
        print(s, flush=True); self.lines.append(s)

    def write(self):
        head = [f"# bench/bench_gpu.py{' --tiny' if self.a.tiny else ''}, budget {self.a.budget:.0f} s; " +
                ', '.join(f"{k} {v}" for k, v in self.env.items())]
        total = f"total wall time so far {time.perf_counter() - T0:.1f} s"
        self.txt.write_text('\n'.join(head + self.lines + [total]) + '\n')
        self.json.write_text(json.dumps(dict(env=self.env, settings=dict(budget_s=self.a.budget, tiny=self.a.tiny,
                             sizes=SIZES['tiny' if self.a.tiny else 'full']), sections=self.sections,
                             wall_s=time.perf_counter() - T0), indent=1, default=str) + '\n')


def environment(a, dev)->dict:
    import torch, numpy, scipy
    commit = a.commit
    if not commit:
        try: commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception: commit = ''
    cpu = platform.processor() or platform.machine()
    try: cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except Exception: pass
    env = dict(commit=commit or 'unknown', date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'),
               python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
               numpy=numpy.__version__, scipy=scipy.__version__, device=str(dev), device_name='cpu', cpu=cpu,
               cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
               tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)
    if dev.type == 'cuda':
        p = torch.cuda.get_device_properties(dev)
        env.update(device_name=p.name, device_memory_gib=round(p.total_memory/2**30, 1), sm_count=p.multi_processor_count)
    return env


# ---------------------------------------------------------------------------------------------------------------
def sync(dev):
    import torch
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def timed(dev, fn):
    "(seconds, result) of fn(), the device synchronised before and after."
    sync(dev); t = time.perf_counter(); out = fn(); sync(dev)
    return time.perf_counter() - t, out


def median_timed(dev, fn, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t, out = timed(dev, fn); ts.append(t)
    return statistics.median(ts), out


def verdict(ratio, target, le=True)->str:
    ok = ratio <= target if le else ratio >= target
    return f"{ratio:.3f} (target {'<=' if le else '>='} {target:g}: {'met' if ok else 'not met'})"


def synthetic(net, n, n_test, dev, seed=0):
    "An lbsharp Dataset of random tensors of the network's input shape, generated on the device."
    import torch
    from lbsharp.data import Dataset
    shape, normal, what = SHAPES[net]
    g = torch.Generator(dev).manual_seed(seed)
    X = (torch.randn if normal else torch.rand)(n + n_test, *shape, generator=g, device=dev)
    Y = torch.randint(0, 10, (n + n_test,), generator=g, device=dev)
    return Dataset(f'{what.lower()}-shaped', X[:n], Y[:n], X[n:], Y[n:], [str(i) for i in range(10)],
                   dict(source=f"generated on {dev}: {'N(0,1)' if normal else 'U[0,1)'} pixels, uniform labels, seed {seed}"))


def free(dev):
    import gc, torch
    gc.collect()
    if dev.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev)->float|None:
    import torch
    return round(torch.cuda.max_memory_allocated(dev)/2**30, 2) if dev.type == 'cuda' else None


# ---------------------------------------------------------------------------------------------------------------
def sec_training(R, S):
    "[1] train() vs the hand loops of bench_training.py, F1 and C2."
    import bench_training as bt
    from lbsharp.networks import build, n_params
    dev, res = R.dev, {}
    R.log("[1] training throughput: lbsharp.training.train vs bench_training.py's hand loops (randperm, slices, cross_entropy, "
          "backward, Adam), same network, batch and device; train()'s own per-epoch seconds (its history evaluations apart)")
    fresh = lambda net: build(net, seed=0).to(dev)
    data = {}
    for net, n, nt, B, E in S['train_cases']:
        if (net, n) not in data: data[net, n] = synthetic(net, n, nt, dev)
    # warm-up: every path once on a slice (cuDNN/cuBLAS handles, fused Adam kernels, allocator); its time sizes the repeats
    t_warm = {}
    for net, n, nt, B, E in S['train_cases']:
        if not R.fits(4, f"warm-up of {net} batch {B}"): return res
        ds = data[net, n]; small = ds.subset(n_train=min(n, 2*B), n_test=min(nt, B))
        t0 = time.perf_counter()
        bt.run_train(fresh(net), small, B, 1); bt.hand_loop(fresh(net), small, B, 1, fused=True); bt.hand_loop(fresh(net), small, B, 1, fused=False)
        sync(dev); t_warm[net, B] = time.perf_counter() - t0
    t_peak, peak = timed(dev, lambda: bt.gemm_peak(dev, S['gemm']))
    # one repeat of the four jobs costs about (n_train·E / (2B)) times the warm-up's three jobs on 2B samples, plus evaluations
    per_rep = sum(t_warm[net, B]*(4/3)*max(1., n*E/(2*B)) + 0.5*t_warm[net, B] for net, n, nt, B, E in S['train_cases'])
    cap = S['train_frac']*R.a.budget    # this section's share of the budget; later repeats are planned on the first one's time
    R.log(f"    warm-up {sum(t_warm.values()):.1f} s; one repeat of all cases estimated {per_rep:.1f} s (an upper bound: the "
          f"warm-up includes first calls); up to {S['train_repeats']} repeats within {cap:.0f} s")
    if not R.fits(min(per_rep, cap), "the training repeats"): return res
    d = {(net, B): dict(train=[], train_total=[], hand=[], hand_fused=[], hand_eval=[], updates=math.ceil(n/B)*E, n=n*E)
         for net, n, nt, B, E in S['train_cases']}
    t_sec, last = time.perf_counter(), per_rep
    for r in range(S['train_repeats']):
        used = time.perf_counter() - t_sec
        if r and (used + last > cap - sum(t_warm.values()) or not R.fits(last, f"repeat {r+1} of the training cases")):
            R.log(f"    stopped after {r} repeat(s): another takes about {last:.1f} s ({used:.1f} s used of the section's {cap:.0f} s)")
            break
        t_rep = time.perf_counter()
        for net, n, nt, B, E in S['train_cases']:
            ds, dd = data[net, n], d[net, B]
            jobs = [('train', lambda: bt.run_train(fresh(net), ds, B, E)),
                    ('hand', lambda: bt.hand_loop(fresh(net), ds, B, E, fused=False)),
                    ('hand_fused', lambda: bt.hand_loop(fresh(net), ds, B, E, fused=True)),
                    ('hand_eval', lambda: bt.hand_loop(fresh(net), ds, B, E, fused=True, evaluate_too=True))]
            for key, job in (jobs if r % 2 == 0 else jobs[::-1]):   # alternate the order against drift
                sync(dev); tt, tot = job(); sync(dev)
                dd[key].append(dd['n']/(tot if key == 'hand_eval' else tt))
                if key == 'train': dd['train_total'].append(dd['n']/tot)
        last = time.perf_counter() - t_rep
    med = statistics.median
    pr = lambda x, y: med([u/v for u, v in zip(x, y)])   # median of the ratios of runs made side by side
    R.log(f"    samples/s, medians of {len(d[next(iter(d))]['train'])} repeat(s); ratios: medians of paired ratios")
    for (net, B), dd in d.items():
        if not dd['train']: continue
        vf = pr(dd['train'], dd['hand_fused'])
        R.log(f"    {net} batch {B:5d} ({dd['n']} samples, {dd['updates']} updates per run): train() {med(dd['train']):9.0f} samples/s, "
              f"hand loop fused Adam {med(dd['hand_fused']):9.0f}, default Adam {med(dd['hand']):9.0f}; "
              f"train()/fused hand {verdict(vf, 0.95, le=False)}, train()/default hand {pr(dd['train'], dd['hand']):.3f}; "
              f"with the per-epoch history: train() {med(dd['train_total']):9.0f} samples/s vs hand loop + same evaluations "
              f"{med(dd['hand_eval']):9.0f}, ratio {pr(dd['train_total'], dd['hand_eval']):.3f}")
        res[f'{net}_b{B}'] = dict(samples=dd['n'], updates=dd['updates'], repeats=len(dd['train']),
                                  **{k: med(v) for k, v in dd.items() if isinstance(v, list)},
                                  ratio_vs_fused=vf, ratio_vs_default=pr(dd['train'], dd['hand']),
                                  ratio_with_history=pr(dd['train_total'], dd['hand_eval']))
    P = n_params(build('F1'))
    R.log(f"    fp32 GEMM peak (torch.mm {S['gemm']}^2, median of 5, TF32 for matmul {R.env['tf32_matmul']}): {peak/1e12:.2f} TFLOP/s ({t_peak:.1f} s)")
    res['gemm_peak_tflops'] = peak/1e12
    for (net, B), dd in d.items():
        if net != 'F1' or not dd['train']: continue
        s = med(dd['train'])
        R.log(f"    F1 batch {B}: {6*P*s/1e12:.2f} TFLOP/s of training (6 x {P} params x samples/s) = {6*P*s/peak:.3f} of the GEMM peak "
              f"(bench_training.py's CPU targets: 0.75 at batch 6000, 0.6 at 256)")
        res[f'F1_b{B}']['flop_ratio'] = 6*P*s/peak
    res['peak_mem_gib'] = peak_gib(dev)
    return res


def sec_sharpness(R, S, model, X, Y):
    "[2] full-space eps-sharpness of C2 on the CIFAR-shaped samples."
    import lbsharp as lbs
    from lbsharp.evaluation import evaluate
    dev, chunk, res = R.dev, S['sharp_chunk'], {}
    R.log(f"[2] full-space eps-sharpness of {S['cnn']} ({sum(q.numel() for q in model.parameters()):,} parameters) at its initial point "
          f"(init_model({S['cnn']!r}, seed=0)) on {len(X):,} CIFAR-shaped samples, chunk {chunk}: lbsharp.box(model, (X, Y), 1e-3, "
          f"iters={S['sharp_iters']}) (solver 'scaled', one start)")
    if not R.fits(6, "the f+g warm-up"): return res
    t_w, _ = timed(dev, lambda: evaluate(model, X, Y, chunk, grad=True))
    reps = S['fg_repeats'] if R.left() > 20*t_w + 30 else 1
    t_fg, _ = median_timed(dev, lambda: evaluate(model, X, Y, chunk, grad=True), reps)
    res.update(fg_s=t_fg, fg_warmup_s=t_w, fg_samples_per_s=len(X)/t_fg)
    R.log(f"    one f+g pass (evaluate(grad=True)) over {len(X):,} samples: {t_fg:.3f} s (median of {reps}; first call {t_w:.2f} s) "
          f"= {len(X)/t_fg:,.0f} samples/s")
    # L-BFGS-B takes about 1.1-1.5 evaluations per iteration, plus f0 and the probe; SciPy's setulb runs on the CPU over all
    # n variables, about 1 s per call at n = 15M on a fast core (3.6 s on the shared CPU where this script was written)
    n = sum(q.numel() for q in model.parameters())
    need = (1.6*S['sharp_iters'] + 4)*t_fg + (1.5*S['sharp_iters'] + 2)*n*1e-7 + 3
    if not R.fits(need, "the eps-sharpness run"): return res
    t, r = timed(dev, lambda: lbs.sharpness(model, (X, Y), 1e-3, iters=S['sharp_iters'], chunk=chunk))
    over = r.seconds/(r.evaluations*t_fg)
    rest = r.seconds - (r.evaluations + 1)*t_fg     # outside the evaluations (and the probe): L-BFGS-B on the CPU, copies
    res.update(seconds=t, sharpness_seconds=r.seconds, iterations=r.iterations, evaluations=r.evaluations, phi=r.phi,
               f0=r.f0, fmax=r.fmax, message=r.message, lbfgsb=r.lbfgsb, at_bound=r.at_bound, overhead_ratio=over, outside_evaluations_s=rest,
               target_s=S['sharp_target'], met=t <= S['sharp_target'], peak_mem_gib=peak_gib(dev))
    R.log(f"    eps-sharpness: {t:.2f} s wall, {r.iterations} L-BFGS-B iterations, {r.evaluations} f/grad evaluations "
          f"(+1 probe evaluation), {t/r.evaluations:.3f} s per evaluation; {t:.1f} s (target <= {S['sharp_target']:g} s: "
          f"{'met' if t <= S['sharp_target'] else 'not met'}), ratio to the target {t/S['sharp_target']:.3f}")
    R.log(f"    solver overhead: wall/(evaluations x one f+g pass) {verdict(over, 1.15)} (bench_sharpness.py's ratio); "
          f"{rest:.1f} s outside the {r.evaluations + 1} evaluations (L-BFGS-B's setulb on the CPU over {n:,} variables, host-device "
          f"copies: {rest/max(1, r.evaluations):.2f} s per evaluation); phi {r.phi:.4g}, "
          f"f0 {r.f0:.4g}, L-BFGS-B path {r.lbfgsb!r}, stop: {r.message}")
    return res


def sec_subspace(R, S, model, X, Y, full):
    "[3] the p = 100 subspace with A generated on the device vs full space, per evaluation."
    import torch
    import lbsharp as lbs
    from torch.nn.utils import parameters_to_vector, vector_to_parameters
    from lbsharp.evaluation import evaluate
    from lbsharp.subspace import Subspace
    from lbsharp.contract import trainable_params
    dev, chunk, p, res = R.dev, S['sharp_chunk'], S['sub_p'], {}
    params = trainable_params(model)
    x = parameters_to_vector(params).detach().clone()
    n = len(x)
    R.log(f"[3] subspace p = {p} with A generated on the device (Subspace(gen='counter', dense=False): regenerated block by "
          f"block for every product) vs full space, {S['cnn']} n = {n:,}, {len(X):,} samples, chunk {chunk}; one evaluation of "
          f"L-BFGS-B's objective: full = f,grad at x+y; subspace = A y, f,grad at x + A y, A^T grad")
    def fg(z):
        vector_to_parameters(z, params)
        f = evaluate(model, X, Y, chunk, grad=True).loss
        return f, parameters_to_vector([q.grad for q in params])
    Sp = Subspace(n, p, seed=0, device=dev, gen='counter', dense=False)
    y = 1e-4*torch.randn(p, generator=torch.Generator().manual_seed(1)).to(dev)
    try:
        t_fg = full.get('fg_s')
        if not R.fits(3*(t_fg or 5), "the subspace warm-up"): return res
        t_mv, z = timed(dev, lambda: Sp.mv(y))          # warm-up of the generator (first call compiles nothing, allocates)
        t_w, (f, g) = timed(dev, lambda: fg(x + z))
        t_rmv, _ = timed(dev, lambda: Sp.rmv(g))
        one = 2*(t_fg or t_w) + t_mv + t_rmv
        reps = max(1, min(S['sub_repeats'], int((R.left() - 40)/max(one, 1e-3))))
        if not R.fits(one*reps, "the subspace repeats"): return res
        t = dict(full=[], sub=[], A=[])
        for _ in range(reps):              # interleaved, so that drift hits both alike
            t['full'].append(timed(dev, lambda: fg(x + 1e-4))[0])
            sync(dev); t0 = time.perf_counter(); z = Sp.mv(y); sync(dev); t1 = time.perf_counter()
            f, g = fg(x + z); sync(dev); t2 = time.perf_counter()
            Sp.rmv(g); sync(dev); t3 = time.perf_counter()
            t['sub'].append(t3 - t0); t['A'].append(((t1 - t0) + (t3 - t2))/2)
        m = {k: statistics.median(v) for k, v in t.items()}
        ratio = m['sub']/m['full']
        res.update(full_eval_s=m['full'], sub_eval_s=m['sub'], pass_over_A_s=m['A'], ratio=ratio, repeats=reps,
                   met=ratio <= 1.2, rows_per_block=Sp.counter_rows, entries_per_pass=n*p)
        R.log(f"    per evaluation (median of {reps}): full {m['full']:.3f} s, subspace {m['sub']:.3f} s (one pass over A "
              f"{m['A']:.3f} s = {n*p/m['A']/1e9:.1f} G entries/s, 2 passes per evaluation); subspace/full {verdict(ratio, 1.2)}")
        if not R.fits(4*m['A'] + 5, "A^+x (the subspace's setup)"): return res
        vector_to_parameters(x, params)
        t_pinv, _ = timed(dev, lambda: Sp.pinv(x))
        res['pinv_s'] = t_pinv
        R.log(f"    setup A^+x (normal equations in float64, one pass over A, once per measurement): {t_pinv:.2f} s")
    finally: vector_to_parameters(x, params)
    res['peak_mem_gib'] = peak_gib(dev)
    return res


def sec_e2e(R, S, model, X, Y, full, sub):
    "[5] one subspace measurement end to end (one start), if time is left."
    import lbsharp as lbs
    dev, p, res = R.dev, S['sub_p'], {}
    R.log(f"[5] end to end: lbsharp.box(model, (X, Y), 1e-3, p={p}, gen='counter', dense=False, starts=1, "
          f"iters={S['sharp_iters']}), the model and samples of [2] and [3] (the default budget in a subspace is 8 starts, "
          f"about 8x the evaluations)")
    if not sub.get('sub_eval_s'): R.log("    SKIPPED: [3] gave no time per subspace evaluation to plan with"); return res
    need = ((full.get('evaluations') or 16) + 2)*sub['sub_eval_s'] + sub.get('pinv_s', 0) + 5
    if not R.fits(need, "the end-to-end subspace measurement"): return res
    tt, r = timed(dev, lambda: lbs.sharpness(model, (X, Y), 1e-3, p=p, iters=S['sharp_iters'], chunk=S['sharp_chunk'],
                                             gen='counter', dense=False, starts=1))
    per = tt/r.evaluations
    per_full = full['seconds']/full['evaluations'] if full.get('evaluations') else None
    res.update(seconds=tt, iterations=r.iterations, evaluations=r.evaluations, phi=r.phi, per_eval_s=per,
               ratio_per_eval=None if per_full is None else per/per_full, peak_mem_gib=peak_gib(dev))
    R.log(f"    {tt:.2f} s, {r.iterations} L-BFGS-B iterations, {r.evaluations} evaluations, {per:.3f} s per evaluation "
          f"(setup A^+x included)" + ('' if per_full is None else f"; per evaluation vs [2]'s full space {verdict(per/per_full, 1.2)}") +
          f"; phi {r.phi:.4g}")
    return res


def sec_products(R, S):
    "[4] Hessian-vector products per gradient."
    import torch
    import lbsharp as lbs
    from lbsharp.training import init_model
    from lbsharp.evaluation import evaluate
    dev, res = R.dev, {}
    k, reps = S['prod_k'], S['prod_repeats']
    R.log(f"[4] Hessian-vector products per gradient (lbsharp.Hessian at the initial point, synthetic data, medians of "
          f"{reps}): gradient = evaluate(grad=True) over the same samples and chunks; mv(fresh=True) = one product with its own "
          f"forward (target <= 2.2 gradients); mm(fresh=True) = {k} products in one pass, per product (target <= 2.0)")
    for net, n, chunk in S['prod']:
        if not R.fits(8, f"{net}'s products"): break
        model = H = ds = V = None
        try:
            model = init_model(net, seed=0).to(dev)
            ds = synthetic(net, n, 2, dev, seed=1)
            t_h, H = timed(dev, lambda: lbs.Hessian(model, (ds.Xtr, ds.Ytr), chunk=chunk))   # probe: 2 products (warm-up)
            t_g1, _ = timed(dev, lambda: evaluate(model, H.X, H.Y, chunk, grad=True))
            est = reps*(t_g1 + 3*t_h) + 3*k*t_h   # the probe's 2 products took t_h
            if not R.fits(est, f"{net}'s product timings"): break
            t_g, _ = median_timed(dev, lambda: evaluate(model, H.X, H.Y, chunk, grad=True), reps)
            v = H.start(1)
            p0 = H.products
            t_mv, _ = median_timed(dev, lambda: H.mv(v, fresh=True), reps)
            row = dict(samples=n, chunk=chunk, n_params=H.n, grad_s=t_g, mv_s=t_mv, mv_per_grad=t_mv/t_g, mv_products=H.products - p0)
            line = (f"    {net} ({H.n:,} parameters, {n} samples, chunk {chunk}, retain={H.retain}): gradient {t_g*1e3:.1f} ms; "
                    f"mv {t_mv*1e3:.1f} ms = {verdict(t_mv/t_g, 2.2)} gradients")
            if H.retain:
                H.mv(v); t_r, _ = median_timed(dev, lambda: H.mv(v), reps)
                row.update(mv_retained_s=t_r, mv_retained_per_grad=t_r/t_g)
                line += f"; from the kept graph (retain) {t_r*1e3:.1f} ms = {t_r/t_g:.3f} gradients"
            res[net] = row
            R.log(line + f" ({H.products} products so far)")
            V = torch.randn(H.n, k, generator=torch.Generator().manual_seed(2)).to(dev)
            if R.fits(2*k*t_mv + 2, f"{net}'s batched products"):
                p0 = H.products
                H.mm(V, fresh=True)                                    # warm-up of the batched (vmap) backward
                t_mm, _ = median_timed(dev, lambda: H.mm(V, fresh=True), max(1, reps//2))
                row.update(mm_s=t_mm, mm_k=k, mm_per_product_per_grad=t_mm/k/t_g, mm_products=H.products - p0)
                R.log(f"    {net} mm of {k} vectors: {t_mm*1e3:.1f} ms, {t_mm/k*1e3:.1f} ms per product = {verdict(t_mm/k/t_g, 2.0)} "
                      f"gradients ({H.products} products in all)")
            row.update(products=H.products, peak_mem_gib=peak_gib(dev))
        except Exception as e:   # one network's failure (e.g. out of device memory) does not cost the other its numbers
            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            R.log(f"    {net}: FAILED {msg}" + (" (lower its samples or chunk in SIZES)" if isinstance(e, torch.cuda.OutOfMemoryError) else ''))
            res.setdefault(net, {})['error'] = msg
        finally:
            model = H = ds = V = None; free(dev)
    return res


# ---------------------------------------------------------------------------------------------------------------
def main(argv=None):
    a = parse(argv)
    os.environ.setdefault('LBSHARP_QUIET', '1')     # no progress bars in the log
    import torch
    if a.device is None: a.device = 'cpu' if a.tiny else 'cuda'
    dev = torch.device(a.device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        sys.exit("bench_gpu.py: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine, or pass --tiny "
                 "for the CPU smoke run")
    sys.path.insert(0, str(HERE))                    # the other benches, reused
    R = Run(a, dev)
    S = SIZES['tiny' if a.tiny else 'full']
    want = SECTIONS if a.only is None else a.only.split(',')
    R.log(f"bench_gpu: {R.env['device_name']} ({dev}), torch {R.env['torch']}, CUDA {R.env['cuda']}, commit {R.env['commit']}, "
          f"{R.env['date']}, budget {a.budget:.0f} s ({R.left():.0f} s left after imports)" +
          (" -- TINY SIZES ON THE CPU: a smoke test, not a measurement" if a.tiny else ''))
    R.write()

    def onalarm(*_): raise TimeUp()
    signal.signal(signal.SIGALRM, onalarm)
    signal.setitimer(signal.ITIMER_REAL, max(1., R.left() + 10))   # the hard stop

    state = {}
    def section(name, fn):
        if name not in want: return
        t0 = time.perf_counter(); R.log()
        try:
            r = fn(); R.sections[name] = dict(status='done' if r else 'skipped', section_s=time.perf_counter() - t0, **(r or {}))
        except TimeUp:
            R.log(f"    INTERRUPTED: the hard budget ({a.budget:.0f} s + 10 s) ran out in this section")
            R.sections[name] = dict(status='interrupted', section_s=time.perf_counter() - t0)
        except Exception as e:
            R.log(f"    FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            R.sections[name] = dict(status='failed', error=traceback.format_exc()[-2000:], section_s=time.perf_counter() - t0)
        R.log(f"    section {name}: {time.perf_counter() - t0:.1f} s; {R.left():.0f} s of the budget left")
        free(dev); R.write()
        return R.sections.get(name, {})

    def c2():   # C2 (C1 with --tiny) at its initial point and the CIFAR-shaped samples of [2] and [3], made once, in the section that first needs them
        if not state:
            from lbsharp.training import init_model
            ds = synthetic(S['cnn'], S['sharp_n'], 2, dev, seed=2)
            state.update(model=init_model(S['cnn'], seed=0).to(dev), X=ds.Xtr, Y=ds.Ytr)
        return state['model'], state['X'], state['Y']

    try:
        section('training', lambda: sec_training(R, S))
        full = section('sharpness', lambda: sec_sharpness(R, S, *c2())) or {}
        sub = section('subspace', lambda: sec_subspace(R, S, *c2(), full)) or {}
        state.clear(); free(dev)                     # [4] needs the device's memory
        section('products', lambda: sec_products(R, S))
        section('end-to-end', lambda: sec_e2e(R, S, *c2(), full, sub))
    except TimeUp:
        R.log("INTERRUPTED between sections: the hard budget ran out")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    done = [k for k, v in R.sections.items() if v.get('status') == 'done']
    R.log(f"\nsummary: sections done {done or 'none'}, of {want}; wall {time.perf_counter() - T0:.1f} s (budget {a.budget:.0f} s); "
          f"results in {R.txt} and {R.json.name}")
    R.write()


if __name__ == '__main__': main()
