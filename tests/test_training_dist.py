"""Data-parallel `train` (torch.distributed, gloo on CPU) means the same as one process.

A BN-free network trained by 2 processes (each with half of every global batch, gradients all-reduced) must end
at the weights of 1 process with the whole batch, to float tolerance; the last batch splits unevenly (46/45) so
the per-share loss weighting is tested too. A 2-process run interrupted after epoch 2 and resumed from its
checkpoint must end bit-identical to the uninterrupted 2-process run (and likewise for 1 process). The
`lbsharp train` command (`torchrun -m lbsharp.cli train`) is tested on the bundled digits data. Each 2-process launch is a real
`torchrun`; the 1-process references run in the test process.
"""
import os, sys, json, subprocess
from pathlib import Path
from types import SimpleNamespace
import pytest, torch, torch.nn as nn
import lbsharp.training   # before any init_process_group: see "A clean teardown" in the parallel notebook

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

def toy_data(n=603, n_test=200, d=8, k=3):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(d, k, generator=g)
    X = torch.randn(n+n_test, d, generator=g); Y = (X@W + 0.5*torch.randn(n+n_test, k, generator=g)).argmax(1)
    return SimpleNamespace(name='toy', Xtr=X[:n], Ytr=Y[:n], Xte=X[n:], Yte=Y[n:], n_classes=k, input_shape=(d,), meta={})

def toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))

def runs(ckdir):
    "The runs compared: 4 epochs of batch 128 on 603 samples; the same run cut after epoch 2 and resumed."
    from lbsharp.training import train
    out = {}
    m = toy_model(); h = train(m, toy_data(), batch=128, epochs=4, quiet=True)
    out['full'] = dict(w=nn.utils.parameters_to_vector(m.parameters()).detach(), log=h.log)
    m = toy_model(); train(m, toy_data(), batch=128, epochs=2, quiet=True, checkpoint_dir=ckdir)
    m = toy_model(); h = train(m, toy_data(), batch=128, epochs=4, quiet=True, checkpoint_dir=ckdir, resume=True)
    out['resumed'] = dict(w=nn.utils.parameters_to_vector(m.parameters()).detach(), log=h.log)
    return out

def worker(path):
    "Entry point of each torchrun process."
    import torch.distributed as dist
    dist.init_process_group('gloo')
    try:
        out = runs(Path(path).parent/'ck')
        if dist.get_rank() == 0: torch.save(out, path)
    finally: dist.destroy_process_group()

def torchrun(args, tmp_path, n=2):
    "One real `torchrun` launch; no retry (the gloo teardown abort is fixed at its root, see the training notebook)."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'LBSHARP_QUIET': '1', 'PYTHONPATH': f"{HERE}{os.pathsep}{ROOT}"}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}', *args]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'terminate called' not in r.stderr, r.stderr[-3000:]
    return r

def _close_logs(a, b, tol):
    for ra, rb in zip(a, b):
        assert (ra['epoch'], ra['updates'], ra['batch']) == (rb['epoch'], rb['updates'], rb['batch'])
        for k in ('train_loss', 'test_loss', 'batch_loss', 'train_acc', 'test_acc'):
            if ra[k] is not None: assert abs(ra[k] - rb[k]) <= tol, (k, ra, rb)

def test_two_processes_match_one(tmp_path):
    one = runs(tmp_path/'ck1')                                       # this process, world size 1
    script = tmp_path/'w.py'
    script.write_text(f"import sys\nfrom test_training_dist import worker\nworker(sys.argv[1])\n")
    torchrun([str(script), str(tmp_path/'two.pt')], tmp_path)
    two = torch.load(tmp_path/'two.pt', weights_only=True)
    # same meaning as one process: weights and history to float tolerance
    assert torch.allclose(two['full']['w'], one['full']['w'], rtol=1e-4, atol=1e-5), \
        (two['full']['w'] - one['full']['w']).abs().max()
    _close_logs(two['full']['log'], one['full']['log'], 1e-4)
    assert two['full']['log'][-1]['updates'] == 4*5          # 603 = 4*128 + 91: five updates per epoch
    # resume under data parallelism is exact
    assert torch.equal(two['resumed']['w'], two['full']['w'])
    assert torch.equal(one['resumed']['w'], one['full']['w'])

def test_torchrun_cli(tmp_path):
    pytest.importorskip('sklearn')
    args = ['train', '--net', 'mlp-digits', '--data', 'digits', '--bn', 'none', '--batch', '0.1', '--epochs', '2', '--quiet']
    r = torchrun(['-m', 'lbsharp.cli', *args, '--out', 'two.json'], tmp_path, n=2)
    assert r.stdout.count('History(2 epochs') == 1 and r.stdout.count('wrote two.json') == 1, r.stdout   # rank 0 alone prints
    from lbsharp.cli import main                                     # the same command, in this process
    assert main(args + ['--out', str(tmp_path/'one.json')]) == 0
    two, one = (json.loads((tmp_path/f).read_text()) for f in ('two.json', 'one.json'))
    assert two['config']['world_size'] == 2 and one['config']['world_size'] == 1
    assert two['config']['batch_size'] == one['config']['batch_size'] == 144   # ceil(0.1 * 1437)
    _close_logs(two['log'], one['log'], 1e-4)
