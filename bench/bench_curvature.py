"""Benchmark of lbsharp's curvature toolkit against its peers, side by side in one run.

Run from the repository root (one thread; the machine is shared, so sizes are small by default):

    OMP_NUM_THREADS=1 python bench/bench_curvature.py [--n-samples 1000] [--repeats 1] [--steps 20] [--vectors 2]

Peers (benchmark-only): `pip install lbsharp[bench]`, i.e. pyhessian==0.1 hessian-eigenthings==1.0.0a5
curvlinops-for-pytorch==3.0.1. A missing peer is reported and skipped.

The operator is the Hessian of the mean cross-entropy of F1 (784-5x512-10, BatchNorm in batch mode) on a seeded random
subset of `--n-samples` Fashion-MNIST training samples (one chunk, so every library sees the same f), after a short SB training
run. Rows, each with a ratio and the goal of issue #27:
  1. one Hessian-vector product / one gradient: single `mv`                                            <= 2.2
     per product inside an 8-vector `mm` (the CPU default, k backwards, and vmap-batched)              <= 2.0
  2. top-1 (no goal) and 3. top-5 eigenvalues, tol 1e-3: lbsharp / fastest peer that converged
     (agrees with the median of all libraries to 1e-2)                                                 <= 0.5
  4. trace at equal standard error: lbsharp Hutch++ / PyHessian's Hutchinson                           <= 0.8
  5. spectral density at the same Lanczos steps and vectors: lbsharp / fastest peer                    <= 0.8
  6. subspace evaluation at 15M parameters / full-space evaluation                                     <= 1.2
Row 1 also times a forward-over-reverse prototype (torch.func jvp of grad, vmapped over the block; not in the library)
beside the library's double-backward product, for issue #27's question which is faster here.
Every row prints Hessian-vector products beside seconds, so the algorithm (products) and the implementation (seconds
per product) are judged apart. How products are counted: lbsharp by its operator's own counter (`Hessian.products`,
`SpectralDensity.products`, `TraceEstimate.products`); each peer by wrapping its Hessian-vector product function
(PyHessian: `pyhessian.hessian.hessian_vector_product`, which its eigenvalues/trace/density call once per vector;
hessian-eigenthings: the operator's `matvec`; curvlinops: the SciPy operator's matvec/matmat, one per column). Each
peer's one-off gradient with graph (PyHessian's constructor; none for the others, which rebuild it inside each
product) is not a product and is not counted. The run ends with a summary table: goal, ratio, met or not, products.
Times are medians of `--repeats` runs (1 by default on the shared CPU: then single measurements).
"""
from __future__ import annotations
import argparse, math, statistics, time, warnings
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

from lbsharp.data import load
from lbsharp.training import init_model, train
from lbsharp.evaluation import evaluate
from lbsharp.hessian import Hessian
from lbsharp.curvature import spectral_density, hutchpp

warnings.filterwarnings('ignore', category=FutureWarning)
warnings.filterwarnings('ignore', message='Using backward.. with create_graph=True')   # PyHessian's constructor


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


def verdict(ratio, target): return f"ratio {ratio:6.3f} (goal <= {target}): {'met' if ratio <= target else 'NOT met'}"


class Counted:
    "Wraps a Hessian-vector product function and counts the vectors it is applied to (`cols`: columns of a block)."
    def __init__(self, fn, cols=False): self.fn, self.cols, self.n = fn, cols, 0
    def __call__(self, v, *args, **kw):
        self.n += (v.shape[1] if (self.cols and getattr(v, 'ndim', 1) == 2) else 1)
        return self.fn(v, *args, **kw)


def pyhessian_counted(P, *args, **kw):
    "PyHessian's hessian object with its module's `hessian_vector_product` wrapped; returns (object, counter)."
    import sys, pyhessian.utils as u
    m = sys.modules['pyhessian.hessian']   # the module (the package's attribute of that name is the class)
    c = Counted(lambda v, gradsH, params: u.hessian_vector_product(gradsH, params, v))
    m.hessian_vector_product = lambda gradsH, params, v: c(v, gradsH, params)   # the original stays in pyhessian.utils
    return P['PyHessian 0.1'](*args, **kw), c


def he_counted(he, model, X, Y):
    "hessian-eigenthings' HessianOperator with its matvec counted (every algorithm of the library applies it per vector)."
    op = he.HessianOperator(model, [(X, Y)], he.supervised_loss(F.cross_entropy))
    c = Counted(op.matvec); op.matvec = c
    return op, c


def row(name, t, prods, rest=''):
    ps = f"{prods:5d} products  {t/prods:6.3f} s/product" if prods else "    ? products                  "
    print(f"    {name:30s} {t:7.2f} s  {ps}  {rest}")


def forward_over_reverse(H):
    "Prototype (not in the library) of H @ V by forward-over-reverse, torch.func jvp of grad (vmapped over V's columns)."
    from torch.func import jvp, grad, functional_call, vmap
    ids = {id(q) for q in H.params}
    prm = {k: q.detach() for k, q in H.model.named_parameters() if id(q) in ids}
    sizes = [q.numel() for q in prm.values()]
    def one(v, x, y, n):
        vd = {k: t.view_as(prm[k]) for k, t in zip(prm, v.split(sizes))}
        loss = lambda p: H.loss_fn(functional_call(H.model, p, (x,)), y, reduction='sum')/n
        return torch.cat([r.reshape(-1) for r in jvp(grad(loss), (prm,), (vd,))[1].values()])
    def mm(V):   # n×k (or n)
        n, k1 = len(H.X), V.ndim == 1
        Vt = (V[:, None] if k1 else V).T.contiguous()
        out = sum((vmap(one, in_dims=(0, None, None, None)) if len(Vt) > 1 else (lambda vv, *r: one(vv[0], *r)[None]))(
                   Vt, H.X[i:i + H.chunk], H.Y[i:i + H.chunk], n) for i in range(0, n, H.chunk))
        return out[0] if k1 else out.T
    return mm


def summary(S):
    print("\nSummary (issue #27's goals; ratios are of seconds, products beside them)")
    print(f"    {'goal':62s} {'ratio':>7s}  {'verdict':9s} {'lbsharp':28s} peer / reference")
    for goal, target, r, mine, theirs in S:
        g = f"{goal} <= {target}" if target is not None else f"{goal} (no goal)"
        v = '-' if target is None or r is None else ('met' if r <= target else 'NOT met')
        rs = f"{r:7.3f}" if r is not None else '      -'
        print(f"    {g:62s} {rs}  {v:9s} {mine:28s} {theirs}")


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

    S = []   # summary: (goal, target, ratio, lbsharp side, peer side)
    # 1. product / gradient
    t_g, _ = median_time(lambda: evaluate(model, H.X, H.Y, H.chunk, grad=True), max(3, a.repeats))
    v = H.start(0); H.mv(v)
    t_mv, _ = median_time(lambda: H.mv(v), max(3, a.repeats))
    V = torch.randn(H.n, 8)
    t_mm, _ = median_time(lambda: H.mm(V), a.repeats)
    t_mb, _ = median_time(lambda: H.mm(V, batched=True), a.repeats)
    print(f"\n[1] one Hessian-vector product / one gradient (gradient {t_g:.3f} s; 1 product = 1 vector)")
    print(f"    mv (one vector)                  {t_mv:.3f} s  {verdict(t_mv/t_g, 2.2)}")
    print(f"    mm (8 vectors, k backwards) / product {t_mm/8:.3f} s  {verdict(t_mm/8/t_g, 2.0)}")
    print(f"    mm (8 vectors, vmap-batched) / product {t_mb/8:.3f} s  {verdict(t_mb/8/t_g, 2.0)}")
    fr = forward_over_reverse(H)
    d_v, d_m = float((fr(v) - H.mv(v)).norm()/H.mv(v).norm()), float((fr(V) - H.mm(V)).norm()/H.mm(V).norm())
    t_fv, _ = median_time(lambda: fr(v), max(3, a.repeats))
    t_fm, _ = median_time(lambda: fr(V), a.repeats)
    print(f"    forward-over-reverse prototype (torch.func jvp of grad; differs from mv/mm by {d_v:.1e}/{d_m:.1e} relative):")
    print(f"      one vector                     {t_fv:.3f} s  {verdict(t_fv/t_g, 2.2)}")
    print(f"      8 vectors, vmapped / product   {t_fm/8:.3f} s  {verdict(t_fm/8/t_g, 2.0)}")
    S.append(('mv / gradient', 2.2, t_mv/t_g, f'1 product: {t_mv:.3f} s', f'1 gradient: {t_g:.3f} s'))
    S.append(('mm per product / gradient (k backwards)', 2.0, t_mm/8/t_g, f'8 products: {t_mm:.2f} s', f'1 gradient: {t_g:.3f} s'))
    S.append(('mm per product / gradient (vmap-batched)', 2.0, t_mb/8/t_g, f'8 products: {t_mb:.2f} s', f'1 gradient: {t_g:.3f} s'))

    # 2-3. top-k eigenvalues
    for k in (1, 5):
        rows, prods = {}, {}   # prods: products of the last repeat
        def f():
            Hk = Hessian(model, (X, Y), chunk=H.chunk, probe=False)
            w = Hk.eigenvalues(k, tol=1e-3); prods['lbsharp'] = Hk.products
            return np.asarray(w)
        rows['lbsharp'] = median_time(f, a.repeats)
        if 'PyHessian 0.1' in P:
            def f():
                hc, c = pyhessian_counted(P, model, crit, data=(X, Y), cuda=False)
                w = np.sort(hc.eigenvalues(maxIter=100, tol=1e-3, top_n=k)[0])[::-1]; prods['PyHessian 0.1'] = c.n
                return w
            peer_time('PyHessian 0.1', f, a.repeats, rows)
        if 'hessian-eigenthings 1.0.0a5' in P:
            he = P['hessian-eigenthings 1.0.0a5']
            def f():
                op, c = he_counted(he, model, X, Y)
                r = he.lanczos(op, k=k, which='LA', tol=1e-3, seed=0); prods['hessian-eigenthings 1.0.0a5'] = c.n
                return np.sort(np.asarray(r.eigenvalues, dtype=float))[::-1]
            peer_time('hessian-eigenthings 1.0.0a5', f, a.repeats, rows)
        if 'curvlinops 3.0.1 + eigsh' in P:
            from scipy.sparse.linalg import eigsh, LinearOperator
            cl = P['curvlinops 3.0.1 + eigsh']
            def f():
                op = cl.HessianLinearOperator(model, crit, params, [(X, Y)], check_deterministic=False).to_scipy()
                c = Counted(op.matmat, cols=True)
                cop = LinearOperator(op.shape, matvec=lambda v: c(np.asarray(v).reshape(-1, 1)).ravel(), matmat=c, dtype=op.dtype)
                w = np.sort(eigsh(cop, k=k, which='LA', tol=1e-3)[0])[::-1]; prods['curvlinops 3.0.1 + eigsh'] = c.n
                return w
            peer_time('curvlinops 3.0.1 + eigsh', f, a.repeats, rows)
        print(f"\n[{2 if k == 1 else 3}] top-{k} eigenvalues, tol 1e-3")
        for name, (t, w) in rows.items(): row(name, t, prods.get(name), np.array2string(np.asarray(w)[:k], precision=5))
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
            print(f"    lbsharp / fastest converged peer ({best}): {verdict(r, 0.5) if k == 5 else f'ratio {r:6.3f} (no goal)'}"
                  f"; products {prods['lbsharp']} vs {prods.get(best, '?')}")
            S.append((f'top-{k} / fastest converged peer ({best})', 0.5 if k == 5 else None, r,
                      f"{prods['lbsharp']} products, {rows['lbsharp'][0]:.2f} s", f"{prods.get(best, '?')} products, {peer[best]:.2f} s"))
        else: S.append((f'top-{k} / fastest converged peer', 0.5 if k == 5 else None, None, f"{prods['lbsharp']} products", 'no peer converged'))

    # 4. trace at equal standard error
    print(f"\n[4] trace at equal standard error")
    t_h, hp = median_time(lambda: hutchpp(Hessian(model, (X, Y), chunk=H.chunk, probe=False), a.trace_budget), a.repeats)
    row('lbsharp Hutch++', t_h, hp.products, f"{hp.estimate:.5g} ± {hp.stderr:.2g}")
    if 'PyHessian 0.1' in P:
        cnt = {}
        def f():
            hc, c = pyhessian_counted(P, model, crit, data=(X, Y), cuda=False)
            tr = np.asarray(hc.trace(maxIter=100, tol=1e-3)); cnt['n'] = c.n
            return tr
        t_p, tr = median_time(f, a.repeats)
        se_p = tr.std(ddof=1)/math.sqrt(len(tr))
        row('PyHessian Hutchinson', t_p, cnt['n'], f"{tr.mean():.5g} ± {se_p:.2g}  ({len(tr)} probes)")
        x = (se_p/hp.stderr)**2   # Hutchinson's cost for Hutch++'s standard error (error ∝ 1/sqrt(probes))
        eq, eq_p = t_p*x, cnt['n']*x
        print(f"    PyHessian at Hutch++'s standard error (extrapolated by 1/sqrt(probes)): {eq:.2f} s, {eq_p:.0f} products")
        print(f"    lbsharp / PyHessian at equal standard error: {verdict(t_h/eq, 0.8)}; products {hp.products} vs {eq_p:.0f} "
              f"(ratio {hp.products/eq_p:.3f})")
        S.append(('trace / PyHessian at equal standard error', 0.8, t_h/eq, f'{hp.products} products, {t_h:.2f} s',
                  f'{eq_p:.0f} products, {eq:.2f} s (extrapolated from {cnt["n"]}, {t_p:.2f} s)'))
    if 'hessian-eigenthings 1.0.0a5' in P:
        he = P['hessian-eigenthings 1.0.0a5']
        cnt = {}
        def f():
            op, c = he_counted(he, model, X, Y)
            r = he.hutch_plus_plus(op, num_matvecs=a.trace_budget, seed=0); cnt['n'] = c.n
            return r
        t_e, r = median_time(f, a.repeats)
        row('hessian-eigenthings Hutch++', t_e, cnt['n'], f"{float(r.estimate):.5g} (no standard error reported)")

    # 5. spectral density
    print(f"\n[5] spectral density, {a.steps} Lanczos steps x {a.vectors} vectors")
    rows, prods = {}, {}
    def f():
        sd = spectral_density(Hessian(model, (X, Y), chunk=H.chunk, probe=False), a.steps, a.vectors, quiet=True)
        prods['lbsharp'] = sd.products
        return sd.range
    rows['lbsharp'] = median_time(f, a.repeats)
    if 'PyHessian 0.1' in P:
        def f():
            hc, c = pyhessian_counted(P, model, crit, data=(X, Y), cuda=False)
            ev, _ = hc.density(iter=a.steps, n_v=a.vectors); prods['PyHessian 0.1'] = c.n
            return min(map(min, ev)), max(map(max, ev))
        peer_time('PyHessian 0.1', f, a.repeats, rows)
    if 'hessian-eigenthings 1.0.0a5' in P:
        he = P['hessian-eigenthings 1.0.0a5']
        def f():
            op, c = he_counted(he, model, X, Y)
            he.spectral_density(op, num_runs=a.vectors, lanczos_steps=a.steps, seed=0)
            prods['hessian-eigenthings 1.0.0a5'] = c.n
        peer_time('hessian-eigenthings 1.0.0a5', f, a.repeats, rows)
    for name, (t, r) in rows.items(): row(name, t, prods.get(name), f"Ritz range {r}")
    peer = {kk: vv[0] for kk, vv in rows.items() if kk != 'lbsharp'}
    if peer:
        best = min(peer, key=peer.get)
        r = rows['lbsharp'][0]/peer[best]
        print(f"    lbsharp / fastest peer ({best}): {verdict(r, 0.8)}; products {prods['lbsharp']} vs {prods.get(best, '?')}")
        S.append((f'density / fastest peer ({best})', 0.8, r, f"{prods['lbsharp']} products, {rows['lbsharp'][0]:.2f} s",
                  f"{prods.get(best, '?')} products, {peer[best]:.2f} s"))
    summary(S)

    print("\n[6] streamed random subspace at 15M parameters (C2) / full-space evaluation (bench/bench_subspace.py, "
          f"{a.subspace_samples} synthetic samples, median of {a.subspace_repeats}; both generators of A)")
    if a.subspace_repeats < 1: print("    skipped (--subspace-repeats 0)"); return
    import os, sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_subspace
    bench_subspace.main(argparse.Namespace(samples=a.subspace_samples, repeats=a.subspace_repeats, p=100,
                                           device='cuda' if torch.cuda.is_available() else 'cpu'))


if __name__ == '__main__': main()
