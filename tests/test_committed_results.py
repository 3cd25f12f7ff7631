"""Committed results are reproducible, to exactly what holds.

`nbs/results/quick` is regenerated whenever the training or sharpness code changes (`lbsharp run quick` under
`REPRODUCIBLE_ENV`, then `export_results`, which copies the small final weights with the JSON). Every sharpness value
in it is measured again from the committed weights with the experiment's own settings (same solver, ε, subspace A and
seed, same f) in a fresh process with the same thread count and the same numerics pins as recorded. Two promises:

1. **The same machine gives the same bits.** Measuring again in another fresh process on this machine gives every φ
   back exactly (tested on the committed weights and on a tiny run made here).
2. **Another CPU family agrees within `CROSS_CPU_RTOL`.** The pins (MKL, PyTorch and oneDNN held to their AVX2 code
   paths) do *not* make float sums identical across CPU families, and ten L-BFGS-B iterations amplify a 1e-7 change
   in f. Measured on 2026-12-06: the committed values (computed on an "Intel(R) Xeon(R) Processor", pins set, 1 thread)
   recomputed on an "AMD EPYC" (AuthenticAMD; avx avx2 f16c fma sse4_1 sse4_2 sse4a, no avx512; pins set, 1 thread),
   torch 2.14.1: over all 24 committed φ the largest relative difference is 3.1e-4 (trial1-LB, full space, ε=5e-4),
   the 12 full-space values differ by 1.0e-7 to 3.1e-4 (median 5.3e-5), the 12 random-subspace values by 2.2e-8
   to 1.0e-6 (median 1.3e-7); two fresh processes on the AMD machine gave all 24 values bit for bit. `CROSS_CPU_RTOL` = 3e-3 is ten times the largest
   measured difference, and still far below any effect the results report (SB and LB differ by 3x to 9x).

Every new result records its CPU's vendor and instruction-set flags (`environment()`: `cpu_vendor`, `cpu_flags`), so a
difference can be traced to the machines.
"""
from pathlib import Path
import json, math, os, subprocess, sys
import pytest

from lbsharp.experiments import load_runs, run, export_results, REPRODUCIBLE_ENV
from lbsharp.store import read_json, write_json
from lbsharp.presets import preset

QUICK = Path(__file__).resolve().parent.parent/'nbs'/'results'/'quick'
CROSS_CPU_RTOL = 3e-3   # measured: see the module docstring

_CHILD = r"""
import json, sys, torch
from pathlib import Path
from lbsharp.experiments import load_runs, load_data, load_model, measure_model, _sharp_data
out = Path(sys.argv[1]); exp, runs = load_runs(out); only = json.loads(sys.argv[2])
data = load_data(exp); X, Y = _sharp_data(exp, data)
res = {}
for r in runs:
    d = out/f"trial{r['trial']}-{r['regime']}"
    if only is not None and d.name not in only: continue
    torch.set_num_threads(r['environment']['threads'])      # float sums depend on the thread count
    res[d.name] = [[m['space'], m['eps'], m['phi']] for m in measure_model(exp, load_model(d/'model.pt'), X, Y)]
print(json.dumps(res))
"""


def recompute(out:Path, only:list|None=None)->list:
    "(file, committed φ, recomputed φ) for every sharpness JSON in results directory `out` (or its runs `only`), measured in a fresh process."
    exp, runs = load_runs(out)
    assert runs, f"{out} holds no finished runs"
    if only is not None: runs = [r for r in runs if f"trial{r['trial']}-{r['regime']}" in only]
    for r in runs:
        d = out/f"trial{r['trial']}-{r['regime']}"
        assert (d/'model.pt').exists(), (f"{d/'model.pt'} is missing: regenerate {out} with `lbsharp run {exp.name}` and "
                                          f"`export_results`, which commits the final weights with the JSON")
    pins = {json.dumps(r['environment'].get('numerics') or {}, sort_keys=True) for r in runs}
    assert len(pins) == 1, f"the runs in {out} were computed under different numerics pins: {pins}"
    env = {k: v for k, v in os.environ.items() if k not in REPRODUCIBLE_ENV}
    env.update({k: v for k, v in json.loads(pins.pop()).items() if v is not None})   # the pins the results were computed under
    p = subprocess.run([sys.executable, '-c', _CHILD, str(out), json.dumps(only)], env=env, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    again = json.loads(p.stdout.strip().splitlines()[-1])
    rows = []
    for r in runs:
        d = out/f"trial{r['trial']}-{r['regime']}"
        m2 = {(s, e): phi for s, e, phi in again[d.name]}
        files = sorted(d.glob('sharpness-*.json'))
        assert len(files) == len(m2) == len(r['sharpness']), (d, [f.name for f in files], sorted(m2))
        for f in files:
            m = read_json(f, 'sharpness')['result']
            rows.append((f, m['phi'], m2[(m['space'], m['eps'])]))
    return rows


def check(out:Path, rel_tol:float=0.)->list:
    "Recompute every φ of `out` in a fresh process; each must equal the committed one to `rel_tol` (0: bit for bit). The rows."
    rows = recompute(out)
    for f, phi, phi2 in rows:
        assert math.isclose(phi, phi2, rel_tol=rel_tol, abs_tol=0), (
            f"{f}: committed φ = {phi!r}, recomputed from model.pt {phi2!r} (relative difference {abs(phi2 - phi)/abs(phi):.2g}, "
            f"allowed {rel_tol:g})")
    return rows


def test_committed_quick_results_reproduce():
    exp, runs = load_runs(QUICK)
    for r in runs:   # computed under the pins, so that they come back on any CPU
        assert r['environment'].get('numerics') == REPRODUCIBLE_ENV, (
            f"{QUICK} was computed without the numerics pins ({r['environment'].get('numerics')}): regenerate it with "
            + ' '.join(f'{k}={v}' for k, v in REPRODUCIBLE_ENV.items()) + " lbsharp run quick, then export_results")
    assert sorted((r['trial'], r['regime']) for r in runs) == sorted((t, g) for t in range(exp.trials) for g in exp.regimes)
    for r in runs:   # small enough to commit
        assert (QUICK/f"trial{r['trial']}-{r['regime']}"/'model.pt').stat().st_size < 2**20
    rows = check(QUICK, CROSS_CPU_RTOL)                  # computed on another CPU, perhaps: within the measured tolerance
    again = recompute(QUICK, only=['trial0-SB', 'trial0-LB'])   # this machine, another fresh process: the same bits
    mine = {f: phi2 for f, _, phi2 in rows}
    assert len(again) == 8 and all(phi2 == mine[f] for f, _, phi2 in again), [(f.name, phi2, mine[f]) for f, _, phi2 in again]


def test_check_catches_a_changed_value(tmp_path):
    "The same check on a tiny quick-like directory made here: it passes, and fails once a committed φ is altered."
    tiny = preset('quick', trials=1, epochs=2, data_kw={'n_samples': 1000}, eps=(1e-3,), p=5, sharp_iters=3,
                  landscape_trials=())
    export_results(run(tiny, tmp_path/'run', quiet=True), tmp_path/'committed')
    assert not list((tmp_path/'committed').rglob('checkpoints'))
    check(tmp_path/'committed')                          # this machine: bit for bit, in a fresh process
    f = tmp_path/'committed'/'trial0-LB'/'sharpness-full-0.001.json'
    d = read_json(f, 'sharpness'); phi = d['result']['phi']
    for change, tol in ((1e-6, 0.), (2*CROSS_CPU_RTOL, CROSS_CPU_RTOL)):   # a value the weights do not give
        d['result']['phi'] = phi*(1 + change); write_json(f, d)
        with pytest.raises(AssertionError, match='committed φ'): check(tmp_path/'committed', tol)
    d['result']['phi'] = phi*(1 + CROSS_CPU_RTOL/3); write_json(f, d)
    check(tmp_path/'committed', CROSS_CPU_RTOL)          # within the cross-CPU tolerance: accepted there
    (tmp_path/'committed'/'trial0-SB'/'model.pt').unlink()
    with pytest.raises(AssertionError, match='model.pt is missing'): check(tmp_path/'committed')
