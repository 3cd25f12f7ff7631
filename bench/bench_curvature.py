"""Benchmark of lbsharp's curvature toolkit against its peers, side by side in one run.

Run from the repository root (one thread; the machine is shared, so sizes are small by default):

    OMP_NUM_THREADS=1 python bench/bench_curvature.py [--n-samples 1000] [--repeats 1] [--steps 20] [--vectors 2]

Peers (benchmark-only): `pip install lbsharp[bench]`, i.e. pyhessian==0.1 hessian-eigenthings==1.0.0a5
curvlinops-for-pytorch==3.0.1. A missing peer is reported and skipped.

The operator is the Hessian of the mean cross-entropy of F1 (784-5x512-10, BatchNorm in batch mode) on a seeded random
subset of `--n-samples` Fashion-MNIST training samples (one chunk, so every library sees the same f), after a short SB training
run. Rows, each with a ratio to the best peer and the target:
  1. one Hessian-vector product / one gradient (single `mv`, and per product inside an 8-vector `mm`)  <= 1.5
  2. top-1 and 3. top-5 eigenvalues, tol 1e-3: lbsharp / best peer that agrees (to 1e-2)              <= 0.25 (top-5)
  4. trace at equal standard error: lbsharp Hutch++ / PyHessian's Hutchinson                           <= 0.5
  5. spectral density at the same Lanczos steps and vectors: lbsharp / fastest peer                    <= 1
  6. subspace evaluation at 15M parameters / full-space evaluation                                     <= 1.2
Times are medians of `--repeats` runs (1 by default on the shared CPU: then single measurements).
"""
from __future__ import annotations
import argparse, math, statistics, time, warnings
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

from lbsharp.data import load
from lbsharp.training import init_model, train, evaluate
from lbsharp.sharpness import Hessian
from lbsharp.curvature import spectral_density, hutchpp

warnings.filterwarnings('ignore', category=FutureWarning)


def median_time(fn, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def peer_time(name, fn, repeats, rows):
    "Time a peer into `rows[name]`; a peer that fails is reported, not counted."
    try: rows[name] = median_time(fn, repeats)
    except Exception as e: print(f"    {name:30s} FAILED: {type(e).__name__}: {str(e).splitlines()[0][:120]}")


def peers():
    out = {}
    try: from pyhessian import hessian as ph; out['PyHessian 0.1'] = ph
    except ImportError as e: print(f"  PyHessian missing ({e}); skipped")
    try: import hessian_eigenthings as he; out['hessian-eigenthings 1.0.0a5'] = he
    except ImportError as e: print(f"  hessian-eigenthings missing ({e}); skipped")
    try: import curvlinops as cl; out['curvlinops 3.0.1 + eigsh'] = cl
    except ImportError as e: print(f"  curvlinops missing ({e}); skipped")
    return out


def verdict(ratio, target): return f"ratio {ratio:6.3f} (target <= {target}): {'met' if ratio <= target else 'NOT met'}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n-samples', type=int, default=1000)
    ap.add_argument('--repeats', type=int, default=1)
    ap.add_argument('--steps', type=int, default=20, help='Lanczos steps for the spectral density')
    ap.add_argument('--vectors', type=int, default=2, help='starting vectors for the spectral density')
    ap.add_argument('--trace-budget', type=int, default=30, help='Hutch++ products')
    ap.add_argument('--subspace-samples', type=int, default=64, help='[6]: synthetic CIFAR-shaped samples for C2')
    ap.add_argument('--subspace-repeats', type=int, default=1, help='[6]: repeats (0 skips row 6)')
    a = ap.parse_args()
    torch.manual_seed(0)
    d = load('fashion-mnist').subset(a.n_samples, 1000)
    X, Y = d.Xtr, d.Ytr
    model = init_model('F1', seed=0)
    train(model, d, batch=min(256, a.n_samples//4), epochs=3, seed=0, quiet=True)
    model.eval()
    n = sum(q.numel() for q in model.parameters())
    print(f"F1 on Fashion-MNIST (not MNIST), a seeded random subset of {a.n_samples} training samples (a smaller sample count than the "
          f"5,000 of the reference table: shared CPU), n = {n:,} parameters, {torch.get_num_threads()} thread(s), "
          f"after 3 SB epochs; medians of {a.repeats}")
    P = peers()
    H = Hessian(model, (X, Y), chunk=max(5000, a.n_samples))
    crit = nn.CrossEntropyLoss()
    params = [q for q in model.parameters() if q.requires_grad]

    # 1. product / gradient
    t_g, _ = median_time(lambda: evaluate(model, H.X, H.Y, H.chunk, grad=True), max(3, a.repeats))
    v = H.start(0); H.mv(v)
    t_mv, _ = median_time(lambda: H.mv(v), max(3, a.repeats))
    V = torch.randn(H.n, 8)
    t_mm, _ = median_time(lambda: H.mm(V), a.repeats)
    print(f"\n[1] one Hessian-vector product / one gradient (gradient {t_g:.3f} s)")
    print(f"    mv (one vector)          {t_mv:.3f} s  {verdict(t_mv/t_g, 1.5)}")
    print(f"    mm (8 vectors) / product {t_mm/8:.3f} s  {verdict(t_mm/8/t_g, 1.5)}")

    # 2-3. top-k eigenvalues
    for k in (1, 5):
        rows = {}
        t, w = median_time(lambda: Hessian(model, (X, Y), chunk=H.chunk, probe=False).eigenvalues(k, tol=1e-3), a.repeats)
        rows['lbsharp'] = (t, np.asarray(w))
        if 'PyHessian 0.1' in P:
            def f():
                hc = P['PyHessian 0.1'](model, crit, data=(X, Y), cuda=False)
                return np.sort(hc.eigenvalues(maxIter=100, tol=1e-3, top_n=k)[0])[::-1]
            peer_time('PyHessian 0.1', f, a.repeats, rows)
        if 'hessian-eigenthings 1.0.0a5' in P:
            he = P['hessian-eigenthings 1.0.0a5']
            def f():
                op = he.HessianOperator(model, [(X, Y)], he.supervised_loss(F.cross_entropy))
                r = he.lanczos(op, k=k, which='LA', tol=1e-3, seed=0)
                return np.sort(np.asarray(r.eigenvalues, dtype=float))[::-1]
            peer_time('hessian-eigenthings 1.0.0a5', f, a.repeats, rows)
        if 'curvlinops 3.0.1 + eigsh' in P:
            from scipy.sparse.linalg import eigsh
            cl = P['curvlinops 3.0.1 + eigsh']
            def f():
                op = cl.HessianLinearOperator(model, crit, params, [(X, Y)], check_deterministic=False).to_scipy()
                return np.sort(eigsh(op, k=k, which='LA', tol=1e-3)[0])[::-1]
            peer_time('curvlinops 3.0.1 + eigsh', f, a.repeats, rows)
        print(f"\n[{2 if k == 1 else 3}] top-{k} eigenvalues, tol 1e-3")
        for name, (t, w) in rows.items(): print(f"    {name:30s} {t:7.2f} s  {np.array2string(np.asarray(w)[:k], precision=5)}")
        ref = np.median([np.asarray(vv[1])[:k] for vv in rows.values()], axis=0)   # the answer most libraries give
        peer = {}
        for kk, (t, w) in rows.items():
            err = float(np.max(np.abs(np.asarray(w)[:k] - ref)/np.abs(ref)))
            if err > 1e-2: print(f"    {kk}: eigenvalues differ from the median of all libraries by {err:.1e} (relative): "
                                 f"not converged, excluded from the comparison")
            elif kk != 'lbsharp': peer[kk] = t
        if peer:
            best = min(peer, key=peer.get)
            r = rows['lbsharp'][0]/peer[best]
            print(f"    lbsharp / best agreeing peer ({best}): {verdict(r, 0.25) if k == 5 else f'ratio {r:6.3f} (no target)'}")

    # 4. trace at equal standard error
    print(f"\n[4] trace at equal standard error")
    t_h, hp = median_time(lambda: hutchpp(Hessian(model, (X, Y), chunk=H.chunk, probe=False), a.trace_budget), a.repeats)
    print(f"    lbsharp Hutch++ ({a.trace_budget} products)  {t_h:7.2f} s  {hp.estimate:.5g} ± {hp.stderr:.2g}")
    if 'PyHessian 0.1' in P:
        def f():
            hc = P['PyHessian 0.1'](model, crit, data=(X, Y), cuda=False)
            return np.asarray(hc.trace(maxIter=100, tol=1e-3))
        t_p, tr = median_time(f, a.repeats)
        se_p = tr.std(ddof=1)/math.sqrt(len(tr))
        print(f"    PyHessian Hutchinson ({len(tr)} probes)  {t_p:7.2f} s  {tr.mean():.5g} ± {se_p:.2g}")
        eq = t_p*(se_p/hp.stderr)**2   # Hutchinson's time for Hutch++'s standard error (error ∝ 1/sqrt(probes))
        print(f"    PyHessian's time at Hutch++'s standard error (extrapolated by 1/sqrt(probes)): {eq:.2f} s")
        print(f"    lbsharp / PyHessian at equal standard error: {verdict(t_h/eq, 0.5)}")
    if 'hessian-eigenthings 1.0.0a5' in P:
        he = P['hessian-eigenthings 1.0.0a5']
        t_e, r = median_time(lambda: he.hutch_plus_plus(he.HessianOperator(model, [(X, Y)], he.supervised_loss(F.cross_entropy)),
                                                        num_matvecs=a.trace_budget, seed=0), a.repeats)
        print(f"    hessian-eigenthings Hutch++ ({a.trace_budget} products) {t_e:7.2f} s  {float(r.estimate):.5g}")

    # 5. spectral density
    print(f"\n[5] spectral density, {a.steps} Lanczos steps x {a.vectors} vectors")
    rows = {}
    rows['lbsharp'] = median_time(lambda: spectral_density(Hessian(model, (X, Y), chunk=H.chunk, probe=False), a.steps, a.vectors, quiet=True).range, a.repeats)
    if 'PyHessian 0.1' in P:
        def f():
            ev, _ = P['PyHessian 0.1'](model, crit, data=(X, Y), cuda=False).density(iter=a.steps, n_v=a.vectors)
            return min(map(min, ev)), max(map(max, ev))
        peer_time('PyHessian 0.1', f, a.repeats, rows)
    if 'hessian-eigenthings 1.0.0a5' in P:
        he = P['hessian-eigenthings 1.0.0a5']
        peer_time('hessian-eigenthings 1.0.0a5', lambda: he.spectral_density(
            he.HessianOperator(model, [(X, Y)], he.supervised_loss(F.cross_entropy)), num_runs=a.vectors,
            lanczos_steps=a.steps, seed=0) and None, a.repeats, rows)
    for name, (t, r) in rows.items(): print(f"    {name:30s} {t:7.2f} s  Ritz range {r}")
    peer = {kk: vv[0] for kk, vv in rows.items() if kk != 'lbsharp'}
    if peer:
        best = min(peer, key=peer.get)
        print(f"    lbsharp / fastest peer ({best}): {verdict(rows['lbsharp'][0]/peer[best], 1.0)}")

    print("\n[6] streamed random subspace at 15M parameters (C2) / full-space evaluation (bench/bench_subspace.py, "
          f"{a.subspace_samples} synthetic samples, median of {a.subspace_repeats}; both generators of A)")
    if a.subspace_repeats < 1: print("    skipped (--subspace-repeats 0)"); return
    import os, sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_subspace
    bench_subspace.main(argparse.Namespace(samples=a.subspace_samples, repeats=a.subspace_repeats, p=100,
                                           device='cuda' if torch.cuda.is_available() else 'cpu'))


if __name__ == '__main__': main()
