"""Committed results are reproducible: φ recomputed from each run's committed `model.pt` equals the committed value.

`nbs/results/quick` is regenerated whenever the training or sharpness code changes (`lbsharp run quick`, then
`export_results`, which copies the small final weights with the JSON). Whatever it holds, every sharpness value in it
must come back to 1e-6 relative when the committed weights are measured again with the experiment's own settings
(same solver, ε, subspace A and seed, same f, same thread count as recorded) — otherwise the committed numbers were not
produced by this code, or the measurement is not deterministic.
"""
from pathlib import Path
import math
import pytest, torch

from lbsharp.experiments import (load_runs, load_data, load_model, read_json, write_json, measure_model, run, preset,
                                 export_results, _sharp_data)

QUICK = Path(__file__).resolve().parent.parent/'nbs'/'results'/'quick'


def recompute(out:Path)->list:
    "(file, committed φ, recomputed φ) for every sharpness JSON of every run in results directory `out`."
    exp, runs = load_runs(out)
    assert runs, f"{out} holds no finished runs"
    data = load_data(exp); X, Y = _sharp_data(exp, data)
    rows, threads = [], torch.get_num_threads()
    try:
        for r in runs:
            d = out/f"trial{r['trial']}-{r['regime']}"
            assert (d/'model.pt').exists(), (f"{d/'model.pt'} is missing: regenerate {out} with `lbsharp run {exp.name}` and "
                                              f"`export_results`, which commits the final weights with the JSON")
            torch.set_num_threads(r['environment'].get('threads', threads))   # float sums depend on the thread count
            again = {(m['space'], m['eps']): m['phi'] for m in measure_model(exp, load_model(d/'model.pt'), X, Y)}
            files = sorted(d.glob('sharpness-*.json'))
            assert len(files) == len(again) == len(r['sharpness']), (d, [f.name for f in files], sorted(again))
            for f in files:
                m = read_json(f, 'sharpness')['result']
                rows.append((f, m['phi'], again[(m['space'], m['eps'])]))
    finally: torch.set_num_threads(threads)
    return rows


def check(out:Path):
    for f, phi, phi2 in recompute(out):
        assert math.isclose(phi, phi2, rel_tol=1e-6), f"{f}: committed φ = {phi!r}, recomputed from model.pt {phi2!r}"


def test_committed_quick_results_reproduce():
    exp, runs = load_runs(QUICK)
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
