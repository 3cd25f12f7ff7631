"""Speed of `lbsharp.training.train` on this machine.

(a) Training samples/s of `train()` vs a minimal hand-written PyTorch loop (same model, batch, data order
    scheme, device): per-epoch randperm, slices, `F.cross_entropy`, `backward`, `Adam.step`. Two hand loops:
    `torch.optim.Adam` as a user would write it (on CPU the single-tensor implementation) and with
    `fused=True` (what `train` uses). `train`'s training time is its own per-epoch `seconds` (the epoch loop
    only); its per-epoch evaluation of the whole training and test sets (the history) is reported separately,
    end to end against a hand loop that makes the same `evaluate` calls.
(b) F1 (784 -> 5 x [Dense 512 -> BN -> ReLU] -> 10, BN with batch statistics) training FLOP/s vs the measured
    fp32 GEMM peak (median time of `torch.mm` on 4096 x 4096 matrices). Training FLOPs are counted as
    6 * params * samples (forward 2, backward 4 multiply-adds per weight per sample; exact for the GEMMs of
    linear layers; it also counts the first layer's input gradient, which autograd does not compute, so the
    GEMM work actually executed is ~0.91 x that; both ratios are printed).

Data are random tensors of MNIST's sample shape (1 x 28 x 28, 10 classes; 12000 training samples by default, so
that each measurement is short and many can be interleaved; batch 6000 is MNIST's LB) and MNIST-1D's (4000 x 40):
speed does not depend on the values. Every number is a median over `--repeats` interleaved repeats (peak, train, hand loops
in turn, order alternating between repeats, so drift in the load of a shared machine hits all alike); the
train()/hand ratios are medians of the ratios of runs made side by side. Run:

    .venv/bin/python bench/bench_training.py            # CPU, all threads torch sees
    .venv/bin/python bench/bench_training.py --device cuda
"""
import argparse, statistics, time, math, os
import torch, torch.nn.functional as F
from lbsharp.data import Dataset
from lbsharp.networks import build, n_params
from lbsharp.training import train
from lbsharp.evaluation import evaluate

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def gemm_peak(dev, n=4096, reps=5):
    "Median fp32 GEMM FLOP/s of torch.mm on n x n matrices."
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    torch.mm(a, b); sync(dev)
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); torch.mm(a, b); sync(dev); ts.append(time.perf_counter() - t)
    return 2*n**3/statistics.median(ts)

def random_data(name, n, n_test, shape, k, dev, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Dataset(name, torch.rand(n, *shape, generator=g), torch.randint(0, k, (n,), generator=g),
                   torch.rand(n_test, *shape, generator=g), torch.randint(0, k, (n_test,), generator=g),
                   [str(i) for i in range(k)], dict(source='generated: random benchmark tensors')).to(dev)

def hand_loop(model, ds, B, epochs, fused, evaluate_too=False, seed=0):
    "Minimal loop; returns (training seconds, total seconds)."
    dev = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True) if fused else torch.optim.Adam(model.parameters(), lr=1e-3)
    X, Y, n = ds.Xtr, ds.Ytr, len(ds.Xtr)
    g = torch.Generator().manual_seed(seed)
    t_train, t0 = 0., time.perf_counter()
    if evaluate_too: evaluate(model, X, Y); evaluate(model, ds.Xte, ds.Yte)
    for _ in range(epochs):
        t = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=g).to(dev)
        for i in range(0, n, B):
            idx = perm[i:i+B]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(X[idx]), Y[idx])
            loss.backward()
            opt.step()
        sync(dev); t_train += time.perf_counter() - t
        if evaluate_too: evaluate(model, X, Y); evaluate(model, ds.Xte, ds.Yte)
    return t_train, time.perf_counter() - t0

def run_train(model, ds, B, epochs):
    "train(); returns (training seconds from its history, total seconds)."
    t0 = time.perf_counter()
    h = train(model, ds, batch=B, epochs=epochs, quiet=True)
    return sum(h['seconds']), time.perf_counter() - t0

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cpu'); ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: leave as is)')
    ap.add_argument('--n_f1', type=int, default=12000, help='training samples for F1 (MNIST has 60000; speed per sample is the same)')
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.threads: torch.set_num_threads(a.threads)
    print(f"device {dev}{' ' + torch.cuda.get_device_name(dev) if dev.type == 'cuda' else ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, os.cpu_count {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f} "
          f"(shared machine: other jobs may be running)")
    mnist = random_data('mnist-shaped', a.n_f1, 2000, (1, 28, 28), 10, dev)
    m1d = random_data('mnist1d-shaped', 4000, 1000, (40,), 10, dev)
    cases = [('F1', mnist, 6000, 2), ('F1', mnist, 256, 1), ('mlp-mnist1d', m1d, 256, 10), ('mlp-mnist1d', m1d, 400, 10)]
    fresh = lambda name: build(name, seed=0).to(dev)
    # warm up every path once (allocator, MKL/cuBLAS handles, fused kernels)
    for name, ds, B, _ in cases:
        run_train(fresh(name), ds.subset(n_train=min(len(ds.Xtr), 2*B), n_test=500) if hasattr(ds, 'subset') else ds, B, 1)
    peaks, res = [], {c[:3:2]: dict(train=[], train_total=[], hand=[], hand_fused=[], hand_eval=[]) for c in cases}
    for r in range(a.repeats):
        peaks.append(gemm_peak(dev))
        for name, ds, B, E in cases:
            n = len(ds.Xtr)*E
            d = res[(name, B)]
            jobs = [('train', lambda: run_train(fresh(name), ds, B, E)),
                    ('hand', lambda: hand_loop(fresh(name), ds, B, E, fused=False)),
                    ('hand_fused', lambda: hand_loop(fresh(name), ds, B, E, fused=True)),
                    ('hand_eval', lambda: hand_loop(fresh(name), ds, B, E, fused=True, evaluate_too=True))]
            for key, job in (jobs if r % 2 == 0 else jobs[::-1]):   # alternate the order against drift
                tt, tot = job()
                if key == 'hand_eval': d[key].append(n/tot)
                else: d[key].append(n/tt)
                if key == 'train': d['train_total'].append(n/tot)
        print(f"repeat {r+1}/{a.repeats} done", flush=True)
    med = lambda xs: statistics.median(xs)
    peak = med(peaks)
    print(f"\nfp32 GEMM peak (torch.mm 4096^2, median of {a.repeats}): {peak/1e9:.1f} GFLOP/s")
    pr = lambda a, b: med([x/y for x, y in zip(a, b)])   # median of the ratios of runs made side by side
    print("\n(a) training samples/s (medians of repeats); ratios = train() / hand loop, median of paired repeats "
          "(target >= 0.95)")
    print(f"{'network':12} {'batch':>5} {'train()':>9} {'hand':>9} {'fused hand':>10} {'vs hand':>8} {'vs fused':>8} "
          f"| {'train() incl. history':>21} {'hand+same evals':>15} {'ratio':>6}")
    for (name, B), d in res.items():
        print(f"{name:12} {B:5d} {med(d['train']):9.0f} {med(d['hand']):9.0f} {med(d['hand_fused']):10.0f} "
              f"{pr(d['train'], d['hand']):8.3f} {pr(d['train'], d['hand_fused']):8.3f} | "
              f"{med(d['train_total']):21.0f} {med(d['hand_eval']):15.0f} {pr(d['train_total'], d['hand_eval']):6.3f}")
    P = n_params(build('F1'))
    exact = 6*P - 2*784*512  # autograd skips the first layer's input gradient
    print(f"\n(b) F1 training FLOP/s vs GEMM peak (F1 has {P} parameters; FLOPs = 6 * params * samples)")
    for B, target in ((6000, 0.75), (256, 0.6)):
        s = med(res[('F1', B)]['train'])
        paired = pr([6*P*x for x in res[('F1', B)]['train']], peaks)
        print(f"batch {B:5d}: {s:8.0f} samples/s = {6*P*s/1e9:6.1f} GFLOP/s -> ratio {6*P*s/peak:.3f} (target >= {target}; "
              f"median of paired ratios {paired:.3f}); executed-GEMM count {exact*s/1e9:6.1f} GFLOP/s -> {exact*s/peak:.3f}")

if __name__ == '__main__': main()
