"""Progress bars in a real pseudo-terminal, with the installed fastprogress and with the oldest one settings.ini allows.

The lower bound is tested when `LBSHARP_FASTPROGRESS_LOWER` names a directory holding it (`.ci/run` makes one with
`pip install --no-deps --target DIR fastprogress==1.0.0`); it comes first on PYTHONPATH in the child process."""
import os, sys, subprocess, textwrap
from pathlib import Path
import pytest
sys.path.insert(0, str(Path(__file__).parent))
from _terminal import run_in_pty, screen

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent('''
    import time, fastprogress
    from lbsharp.bars import progress, progress_jobs
    print('fastprogress from', fastprogress.__file__)
    for t in progress_jobs(range(2), label='trial'):
        pb = progress(range(5), label='epochs (batch 256)')
        for e in pb:
            pb.comment = f'loss {1/(e+1):.3f}'
            if (t, e) == (1, 3): break                      # an early stop leaves no debris
        b = progress(range(4), label='phi full').start()   # a bar driven by a callback
        for k in range(2): b.step()
        b.close()
        inner = progress(range(3), label='hidden')         # a third level is silent
        pb2 = progress(range(2), label='landscape points')
        for x in pb2:
            for y in inner: pass
    pb = progress(range(3), label='alone')
    for i in pb: pb.comment = f'i={i}'
    print('after the bars')
''')

def _env(lower=None, **kw):
    env = {k: v for k, v in os.environ.items() if k != 'LBSHARP_QUIET'}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (lower, str(ROOT), env.get('PYTHONPATH')) if p)
    return {**env, **kw}

VERSIONS = ['installed', 'lower bound']

def _lower(which):
    if which == 'installed': return None
    d = os.environ.get('LBSHARP_FASTPROGRESS_LOWER')
    if not d: pytest.skip("set LBSHARP_FASTPROGRESS_LOWER to a `pip install --target` directory of the lower bound")
    return d

@pytest.mark.parametrize('which', VERSIONS)
def test_bars_in_a_terminal(which):
    lower = _lower(which)
    rc, raw = run_in_pty([sys.executable, '-c', SCRIPT], _env(lower))
    assert rc == 0, raw
    lines = screen(raw)
    assert lower is None or f'fastprogress from {lower}' in raw, raw
    assert 'trial 1/2 · epochs (batch 256) |' in raw, raw
    assert '100.00% [5/5' in raw and 'loss 0.200' in raw                     # the child bar ran to its end
    assert 'trial 2/2 · epochs (batch 256) |' in raw and '[4/5' in raw       # stopped early
    assert 'trial 2/2 · phi full |' in raw and '[2/4' in raw                 # callback-driven
    assert 'trial 1/2 · landscape points |' in raw and 'hidden' not in raw   # two levels only
    assert 'Epoch' not in raw                                                # fastprogress's default child label is replaced
    assert any(l.startswith('trial 1/2 done in') for l in lines) and any(l.startswith('trial 2/2 done in') for l in lines), lines
    assert any(l.startswith('alone |') and '[3/3' in l and 'i=2' in l for l in lines), lines
    assert lines[-2:] == ['after the bars', ''] or lines[-1] == 'after the bars', lines[-3:]

@pytest.mark.parametrize('which', VERSIONS)
def test_quiet_in_a_terminal(which):
    rc, raw = run_in_pty([sys.executable, '-c', SCRIPT], _env(_lower(which), LBSHARP_QUIET='1'))
    assert rc == 0, raw
    assert [l for l in screen(raw) if l and not l.startswith('fastprogress from')] == ['after the bars'], raw

@pytest.mark.parametrize('which', VERSIONS)
def test_pipe_gets_one_line_per_job(which):
    p = subprocess.run([sys.executable, '-c', SCRIPT], env=_env(_lower(which)), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert '\r' not in p.stdout and '█' not in p.stdout, repr(p.stdout)     # no bar debris in a log file
    assert [l for l in p.stdout.splitlines() if not l.startswith('fastprogress from')] == ['trial 1/2 ...', 'trial 2/2 ...', 'after the bars']
