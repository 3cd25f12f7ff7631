"""Committed results are reproducible: φ recomputed from each run's committed `model.pt` equals the committed value.

`nbs/results/quick` is regenerated whenever the training or sharpness code changes (`lbsharp run quick` under
`REPRODUCIBLE_ENV`, then `export_results`, which copies the small final weights with the JSON). Whatever it holds,
every sharpness value in it must come back to 1e-6 relative when the committed weights are measured again with the
experiment's own settings (same solver, ε, subspace A and seed, same f) in a fresh process with the same thread count
and the same numerics pins as recorded — otherwise the committed numbers were not produced by this code, or the
measurement is not deterministic. The pins (MKL, PyTorch and oneDNN held to their AVX2 code paths) are what make
this hold on any x86-64 CPU, not only the one that produced the results.
"""
from pathlib import Path
import json, math, os, subprocess, sys
import pytest

from lbsharp.experiments import load_runs, read_json, write_json, run, preset, export_results, REPRODUCIBLE_ENV

QUICK = Path(__file__).resolve().parent.parent/'nbs'/'results'/'quick'

_CHILD = r"""
import json, sys, torch
from pathlib import Path
from lbsharp.experiments import load_runs, load_data, load_model, measure_model, _sharp_data
out = Path(sys.argv[1]); exp, runs = load_runs(out)
data = load_data(exp); X, Y = _sharp_data(exp, data)
res = {}
for r in runs:
    d = out/f"trial{r['trial']}-{r['regime']}"
    torch.set_num_threads(r['environment']['threads'])      # float sums depend on the thread count
    res[d.name] = [[m['space'], m['eps'], m['phi']] for m in measure_model(exp, load_model(d/'model.pt'), X, Y)]
print(json.dumps(res))
"""


def recompute(out:Path)->list:
    "(file, committed φ, recomputed φ) for every sharpness JSON in results directory `out`, measured in a fresh process."
    exp, runs = load_runs(out)
    assert runs, f"{out} holds no finished runs"
    for r in runs:
        d = out/f"trial{r['trial']}-{r['regime']}"
        assert (d/'model.pt').exists(), (f"{d/'model.pt'} is missing: regenerate {out} with `lbsharp run {exp.name}` and "
                                          f"`export_results`, which commits the final weights with the JSON")
    pins = {json.dumps(r['environment'].get('numerics') or {}, sort_keys=True) for r in runs}
    assert len(pins) == 1, f"the runs in {out} were computed under different numerics pins: {pins}"
    env = {k: v for k, v in os.environ.items() if k not in REPRODUCIBLE_ENV}
    env.update({k: v for k, v in json.loads(pins.pop()).items() if v is not None})   # the pins the results were computed under
    p = subprocess.run([sys.executable, '-c', _CHILD, str(out)], env=env, capture_output=True, text=True, timeout=1800)
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


def check(out:Path):
    for f, phi, phi2 in recompute(out):
        assert math.isclose(phi, phi2, rel_tol=1e-6), f"{f}: committed φ = {phi!r}, recomputed from model.pt {phi2!r}"


def test_committed_quick_results_reproduce():
    exp, runs = load_runs(QUICK)
    for r in runs:   # computed under the pins, so that they come back on any CPU
        assert r['environment'].get('numerics') == REPRODUCIBLE_ENV, (
            f"{QUICK} was computed without the numerics pins ({r['environment'].get('numerics')}): regenerate it with "
            + ' '.join(f'{k}={v}' for k, v in REPRODUCIBLE_ENV.items()) + " lbsharp run quick, then export_results")
    assert sorted((r['trial'], r['regime']) for r in runs) == sorted((t, g) for t in range(exp.trials) for g in exp.regimes)
    for r in runs:   # small enough to commit
        assert (QUICK/f"trial{r['trial']}-{r['regime']}"/'model.pt').stat().st_size < 2**20
    check(QUICK)


def test_check_catches_a_changed_value(tmp_path):
    "The same check on a tiny quick-like directory made here: it passes, and fails once a committed φ is altered."
    tiny = preset('quick', trials=1, epochs=2, data_kw={'n_samples': 1000}, eps=(1e-3,), p=5, sharp_iters=3,
                  landscape_trials=())
    export_results(run(tiny, tmp_path/'run', quiet=True), tmp_path/'committed')
    assert not list((tmp_path/'committed').rglob('checkpoints'))
    check(tmp_path/'committed')
    f = tmp_path/'committed'/'trial0-LB'/'sharpness-full-0.001.json'
    d = read_json(f, 'sharpness'); d['result']['phi'] *= 1 + 1e-5     # a value the weights do not give
    write_json(f, d)
    with pytest.raises(AssertionError, match='committed φ'): check(tmp_path/'committed')
    (tmp_path/'committed'/'trial0-SB'/'model.pt').unlink()
    with pytest.raises(AssertionError, match='model.pt is missing'): check(tmp_path/'committed')
