"""lbsharp.gap on a synthetic results store (written here, in the store's layout) and on the committed results.

The synthetic store is shaped like the `gap-<ds>-<arm>` experiments: a `none` arm with the SB and LB baselines,
arms whose SB run repeats the baseline bit for bit, a designed "flat but worse" arm, a sweep one of whose points
is the SB baseline itself, and extras in the shapes the registry `lbsharp.measures.MEASURES` reads (λmax a float, the trace an
[estimate, error] pair, the adaptive φ a result dict, the PAC-Bayes flatness measures `pacbayes_sigma`'s dict)."""
import math, re
from pathlib import Path
import numpy as np
import pytest
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from scipy.stats import kendalltau
from lbsharp.store import write_json
from lbsharp.presets import Experiment, exp_to_dict
from lbsharp.store import FORMAT
from lbsharp.measures import MEASURES, RANKED
from lbsharp.rank import kendall
from lbsharp.gap_analysis import (GAPS, ARMS, collect_runs, gap_dirs, missing_arms, tau_results, tau_table, gap_summary, gap_table,
                                  link_breakers, AXES, axis_groups, granulated, granulated_table, granulated_reading)
from lbsharp.gap import gap_figure, gap_reading, gap_headline, pick
from lbsharp.paper_claims import claims, CLAIMS

ROOT = Path(__file__).resolve().parents[1]

def _result(trial, regime, batch, phi, gap, remedy=None, hooks=None, extras=True, stop='target'):
    "One run: training accuracy 100 %, test accuracy 100 − gap; the other measures scale with φ."
    test = 1 - gap/100
    x = dict(lam_max=phi/10, trace=[phi*30, 1.], adaptive={'phi': phi/5, 'eps': 1e-3},
             pacbayes={'sigma': phi**-.5, 'bound': .1}, pacbayes_mag={'sigma': (2*phi)**-.5}) if extras else {}
    return dict(format=FORMAT, kind='run', trial=trial, regime=regime, seed=trial, batch=batch, remedy=remedy,
                final=dict(epochs=10, updates=8000//batch*10, stop=stop, cap=stop == 'max_epochs', train_loss=0.01, train_acc=1.,
                           test_loss=0.01 + gap/20, test_acc=test, train_seconds=1.5),
                sharpness=[dict(space='full', eps=1e-3, phi=phi), dict(space='subspace', eps=1e-3, phi=phi/3)],
                extras=x, history=dict(config=dict(batch_size=batch, hooks=hooks or {}), log=[]))

def _experiment(out, name, regimes, remedy=None):
    write_json(out/name/'experiment.json', dict(format=FORMAT, kind='experiment',
               experiment=exp_to_dict(Experiment(name=name, network='mlp-mnist1d', dataset='mnist1d', regimes=regimes,
                                                 trials=3, eps=(1e-3,), remedy=remedy))))

BASE = {'SB': (64, 2., 20.), 'LB': (1500, 50., 29.)}   # batch, φ, gap (points) at trial 0

@pytest.fixture(scope='module')
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp('results')
    arms = {'none': None, 'sam': dict(phi=2., gap=29.), 'noise-iso': dict(phi=20., gap=24.), 'lr-linear': dict(phi=60., gap=20.)}
    for arm, lb in arms.items():
        name = f'gap-toy-{arm}'
        _experiment(out, name, {'SB': 64, 'LB': 1500}, None if arm == 'none' else arm)
        for t in range(3):
            B, phi, gap = BASE['SB']; write_json(out/name/f'trial{t}-SB'/'result.json', _result(t, 'SB', B, phi*(1 + .05*t), gap + .1*t))
            B, phi, gap = BASE['LB']
            r = (_result(t, 'LB', B, phi*(1 + .05*t), gap + .1*t, stop='max_epochs' if t == 0 else 'target') if lb is None else
                 _result(t, 'LB', B, lb['phi']*(1 + .05*t), lb['gap'] + .1*t, remedy=arm, hooks={'step': arm}, extras=arm != 'lr-linear'))
            write_json(out/name/f'trial{t}-LB'/'result.json', r)
    _experiment(out, 'gap-toy-sweep', {f'B{b}': b for b in (64, 256, 1024)})
    for t in range(2):
        for b, phi, gap in ((64, 2., 20.), (256, 10., 24.), (1024, 40., 28.)):
            write_json(out/'gap-toy-sweep'/f'trial{t}-B{b}'/'result.json',
                       _result(t, f'B{b}', b, phi*(1 + .05*t), gap + .1*t, extras=False))
    _experiment(out, 'gap-other-none', {'SB': 64, 'LB': 1500})         # another data set: never read for 'toy'
    write_json(out/'gap-other-none'/'trial0-SB'/'result.json', _result(0, 'SB', 64, 1., 1.))
    return out

def test_collect(store):
    rows = collect_runs(store, 'toy')
    assert [d.name for d in gap_dirs(store, 'toy')] == ['gap-toy-none', 'gap-toy-sam', 'gap-toy-noise-iso', 'gap-toy-lr-linear', 'gap-toy-sweep']
    count = {l: sum(r['label'] == l for r in rows) for l in dict.fromkeys(r['label'] for r in rows)}
    # SB once per trial (not once per arm); the sweep's B64 trial-0/1 points are the SB baselines themselves: dropped
    assert count == {'SB': 3, 'LB': 3, 'LB+sam': 3, 'LB+noise-iso': 3, 'LB+lr-linear': 3, 'B256': 2, 'B1024': 2}, count
    sb0 = next(r for r in rows if r['label'] == 'SB' and r['trial'] == 0)
    assert sb0['arm'] == 'none' and sb0['batch'] == 64
    assert sb0['gap_acc'] == pytest.approx(20.) and sb0['gap_loss'] == pytest.approx(1.)
    assert [sb0[m] for m in RANKED] == pytest.approx([2., 2/3, .2, 60., .4, 2., 4.])   # 1/σ′², 1/α′² from the stored σ′, α′
    assert RANKED == tuple(k for k, m in MEASURES.items() if m.gap) and 'pacbayes' in RANKED   # every ranked measure is a column
    lin = next(r for r in rows if r['label'] == 'LB+lr-linear')
    assert math.isnan(lin['trace']) and math.isnan(lin['lam_max']) and lin['phi_full'] == pytest.approx(60.)
    assert next(r for r in rows if r['label'] == 'LB' and r['trial'] == 0)['cap']
    assert missing_arms(rows) == [a for a in ARMS if a not in ('none', 'sam', 'noise-iso', 'lr-linear', 'sweep')]
    assert collect_runs(store, 'absent') == []

def test_kendall_monotone_independent_and_scipy():
    k = kendall(np.arange(30.), np.arange(30.)**3)
    assert (k['tau'], k['lo'], k['hi']) == (1., 1., 1.)
    g = np.random.default_rng(3)
    for s in range(3):
        k = kendall(g.normal(size=80), g.normal(size=80), seed=s)
        assert k['lo'] < 0 < k['hi'], k
    x, y = [3., 1, 4, 1, 5, 9, 2, 6], [2., 7, 1, 8, 2, 8, 1, 8]
    assert kendall(x, y)['tau'] == pytest.approx(kendalltau(x, y).statistic)
    a, b = kendall(x, y, seed=5), kendall(x, y, seed=5)
    assert a == b                                                     # seeded: the same interval twice

def test_tau_on_store(store):
    rows = collect_runs(store, 'toy')
    taus = tau_results(rows, n_boot=300)
    x = [r['phi_full'] for r in rows]; y = [r['gap_acc'] for r in rows]
    assert taus['phi_full', 'gap_acc']['tau'] == pytest.approx(kendalltau(x, y).statistic)
    assert taus['trace', 'gap_acc']['n'] == 12                         # lr-linear has no trace, the sweep no extras
    k = taus['phi_full', 'gap_acc']                                   # the envelope of the trial and the run interval
    assert (k['lo'], k['hi']) == (min(k['lo_trial'], k['lo_run']), max(k['hi_trial'], k['hi_run']))
    assert k['lo_run'] == tau_results(rows, cluster=None, n_boot=300)['phi_full', 'gap_acc']['lo']
    t = tau_table(taus)
    assert taus['pacbayes', 'gap_acc'] == taus['trace', 'gap_acc']      # 1/σ′² = φ, tr H = 30 φ here: the same order, the same runs
    assert [r['measure'] for r in t] == [MEASURES[m].label for m in RANKED] and set(t[0]) == {'measure', *(v[0] for v in GAPS.values())}
    assert re.fullmatch(r'[+-]\d\.\d\d \[[+-]\d\.\d\d, [+-]\d\.\d\d\] \(n=19\)', t[0]['gap acc (points)'])

def test_tables(store):
    rows = collect_runs(store, 'toy')
    S = gap_summary(rows)
    assert [s['label'] for s in S] == ['SB', 'LB', 'LB+sam', 'LB+noise-iso', 'LB+lr-linear', 'B256', 'B1024']
    T = {r['run'].split()[0]: r for r in gap_table(S)}
    assert list(T)[:2] == ['SB', 'LB'] and gap_table(S)[1]['run'] == 'LB ⚠1/3'    # the capped run is marked
    assert T['LB+lr-linear']['tr H'] == 'not measured' and T['B256']['λmax'] == 'not measured'
    assert T['SB']['test acc %'] == '79.9 ± 0.1'
    rows2 = [dict(r, trace=math.nan) for r in rows]
    assert all(r['tr H'] == 'not measured' for r in gap_table(gap_summary(rows2)))

def test_link_breakers(store):
    rows = collect_runs(store, 'toy')
    lb = link_breakers(rows)
    got = {(r['run'], r['verdict']) for r in lb}
    assert ('LB+sam', 'flat but worse: as bad as LB') in got              # φ as SB's, gap as LB's
    assert ('LB+lr-linear', 'sharp but as good: as good as SB') in got     # φ above LB's, gap as SB's
    assert not any(r['run'] == 'LB+noise-iso' for r in lb)                # in between on both: on the curve
    assert not any(r['run'].startswith('B') for r in lb)

def test_figures(store):
    fig = gap_figure(store, 'toy')
    assert len(fig.axes) == 2*len(RANKED)
    sup = fig._suptitle.get_text()
    assert 'asam' in sup and 'noise-sb' in sup and 'not measured' not in sup
    assert len(gap_figure(store, 'absent').axes) == 1                   # nothing run: a message, still an image
    fig = gap_figure(ROOT/'nbs'/'results', 'mnist1d', patterns=('remedy-*', 'quick-sweep'), expected=None)
    assert 'not measured: tr H, φ adaptive, 1/σ′², 1/α′²' in fig._suptitle.get_text() and len(fig.axes) == 2*3
    plt.close('all')

def test_reading(store):
    rows = collect_runs(store, 'toy')
    t = gap_reading(rows, 'Toy')
    assert t.startswith('**Toy** — 19 runs in 7 configurations (not yet run: asam, grad-norm, noise-sb, matched-updates, coscale, coscale-beta2).')
    assert "LB's accuracy gap is 29.1 points against SB's 20.1" in t and 'LB+sam is *flat but worse: as bad as LB*' in t
    assert gap_reading([], 'Toy').startswith('**Toy: not yet run.**')
    t = gap_reading([dict(r, pacbayes_mag=math.nan) for r in rows], 'Toy')       # a registered measure no run computed
    assert "- Not measured on these runs: 1/α′² (not among the extras these experiments asked for" in t

def test_committed_remedies_and_sweep():
    rows = collect_runs(ROOT/'nbs'/'results', 'mnist1d', patterns=('remedy-*', 'quick-sweep'))
    assert sum(r['label'] == 'SB' for r in rows) == 3 and sum(r['label'] == 'LB' for r in rows) == 3
    assert all(math.isfinite(r['phi_full']) for r in rows) and all(math.isnan(r['trace']) for r in rows)
    assert all(math.isfinite(r['lam_max']) for r in rows if r['arm'] != 'sweep')


def test_claims(tmp_path):
    "The claims map reads every claim from the committed results; an empty results folder claims nothing."
    C = claims(ROOT/'nbs'/'results')
    assert {c['claim'] for c in C} == {v[0] for v in CLAIMS.values()}
    v = {(c['claim'], c['data set']): c for c in C}
    assert v[CLAIMS['lb_worse'][0], 'MNIST-1D']['verdict'] == 'agrees' and '(3 trials)' in v[CLAIMS['lb_worse'][0], 'MNIST-1D']['evidence']
    assert v[CLAIMS['sharp_full'][0], 'Fashion-MNIST (F1)']['verdict'] == 'agrees'
    assert all(c['verdict'] == 'open' for c in C if c['claim'] == CLAIMS['open'][0])
    assert all(c['ours'].startswith('[') and c['ours'].endswith('.html)') for c in C)
    assert len(claims(tmp_path)) == 0

def test_headline(store):
    rows = {'toy': collect_runs(store, 'toy'), 'absent': []}
    H = gap_headline(rows)
    assert len(H) == 1 and H[0]['data set'] == 'toy' and H[0]['runs'] == 19
    assert 'LB+sam' in H[0]['arms that break the link'] and 'LB+lr-linear' in H[0]['arms that break the link']
    with pytest.raises(KeyError, match="no column 'nope'"): pick(H, 'runs', 'nope')

def test_figure_split(store):
    "One gap per figure, at most three panels a row (legible at a page's width); an unknown gap is refused by name."
    fig = gap_figure(store, 'toy', gaps=('gap_acc',))
    assert len(fig.axes) == len(RANKED) and all(a.get_subplotspec().get_gridspec().ncols <= 3 for a in fig.axes)
    assert fig.get_size_inches()[0] <= 8
    with pytest.raises(ValueError, match="unknown gap 'gap'"): gap_figure(store, 'toy', gaps=('gap',))
    plt.close('all')

def test_cluster_bootstrap_wider_when_runs_of_a_trial_move_together():
    "Five runs per trial with the trial's (x, y) exactly, trials independent: the run-level interval pretends 40 runs."
    g = np.random.default_rng(3); xt, yt = g.normal(size=8), g.normal(size=8)
    x, y, tr = np.repeat(xt, 5), np.repeat(yt, 5), np.repeat(np.arange(8), 5)
    run, cl = kendall(x, y), kendall(x, y, cluster=tr)
    assert run['tau'] == cl['tau']                                       # the point estimate is the same
    assert cl['hi'] - cl['lo'] > 1.5*(run['hi'] - run['lo']), (run, cl)
    assert kendall(x, y, cluster=tr, seed=4) == kendall(x, y, cluster=tr, seed=4)   # seeded, deterministic
    with pytest.raises(ValueError, match='cluster must label every pair: 3 labels for 40 pairs'):
        kendall(x, y, cluster=[0, 1, 2])

def _grun(arm, label, batch, trial, m, g):
    return dict(arm=arm, label=label, regime=label.split('+')[0], batch=batch, trial=trial, m=m, g=g)

def _granular_toy(flip_intervention=False):
    "Batch axis: SB < B256 < LB in both the measure and the gap; intervention axis: LB+sam below LB in the gap."
    rows = []
    for t in range(4):
        rows += [_grun('none', 'SB', 64, t, 1 + t, 1.), _grun('sweep', 'B256', 256, t, 3 + t, 4.), _grun('none', 'LB', 1500, t, 9 + t, 9.),
                 _grun('sam', 'LB+sam', 1500, t, (20 + t) if flip_intervention else (5 + t), 5.),
                 _grun('noise-iso', 'LB+noise-iso', 1500, t, (30 + t) if flip_intervention else (2 + t), 2.),
                 _grun('lr-linear', 'LB+lr-linear', 1500, t, (7 + t) if not flip_intervention else 99., 3.)]
    return rows

def test_granulated_groups_from_recorded_settings():
    G = axis_groups(_granular_toy())
    assert {a: sorted(len(v) for v in g.values()) for a, g in G.items()} == \
        {'batch size': [3]*4, 'learning rate': [2]*4, 'co-scaling': [], 'intervention': [3]*4}
    # an intervention at another batch belongs to no axis
    assert axis_groups([_grun('none', 'LB', 1500, 0, 1, 1), _grun('sam', 'SB+sam', 64, 0, 2, 2)])['intervention'] == {}

def test_granulated_perfect_and_cancelling():
    k = granulated(_granular_toy(), 'm', 'g')                    # orders every group: τ = 1 on each axis, Ψ = 1
    assert [k[a]['tau'] for a in (*AXES, 'psi') if a != 'co-scaling'] == [1.]*4 and k['psi']['lo'] == k['psi']['hi'] == 1.
    assert math.isnan(k['co-scaling']['tau']) and k['co-scaling']['groups'] == 0   # no co-scaling runs: not measured
    k = granulated([r for r in _granular_toy(True) if r['arm'] != 'lr-linear'], 'm', 'g')   # perfect on batch, reversed on interventions
    assert k['batch size']['tau'] == 1. and k['intervention']['tau'] == -1. and math.isnan(k['learning rate']['tau'])
    assert k['psi']['tau'] == 0.                                  # Ψ: the mean over the axes that have a τ
    np.testing.assert_equal(granulated(_granular_toy(), 'm', 'g', seed=2), granulated(_granular_toy(), 'm', 'g', seed=2))   # NaN == NaN here
    with pytest.raises(KeyError, match="no field 'nope'"): granulated(_granular_toy(), 'nope')
    with pytest.raises(ValueError, match='no runs'): granulated([], 'm')

def test_granulated_table_on_store(store):
    rows = collect_runs(store, 'toy')
    t = granulated_table(rows)
    assert [r['measure'] for r in t] == [MEASURES[m].label for m in RANKED]
    k = tau_results(rows)['phi_full', 'gap_acc']; s = lambda v: f"{v:+.2f}".replace('0.', '.')
    assert list(t[0])[-2:] == ['Ψ', 'pooled τ [trials] [runs]']
    assert t[0]['pooled τ [trials] [runs]'] == f"{s(k['tau'])} [{s(k['lo_trial'])}, {s(k['hi_trial'])}] [{s(k['lo_run'])}, {s(k['hi_run'])}]"

def test_granulated_reading_names_the_best_measure_per_axis():
    rows = [{**r, **{m: math.nan for m in RANKED}, 'phi_full': r['m'], 'lam_max': -r['m'], 'gap_acc': r['g']} for r in _granular_toy()]
    line = granulated_reading(rows)
    full = MEASURES['phi_full'].label
    assert line == (f"Highest within each axis: batch size: {full} (+1.00, interval above 0); learning rate: {full} (+1.00, interval above 0); co-scaling: not measured; "
                    f"intervention: {full} (+1.00, interval above 0); Ψ: {full} (+1.00, interval above 0).")
    rows = [{**r, 'trace': r['phi_full']} for r in rows]            # a tie: both named, one shared interval verdict
    assert f"batch size: {full}, {MEASURES['trace'].label} (+1.00, intervals above 0)" in granulated_reading(rows)

