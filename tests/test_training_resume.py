"""A training process killed mid-run (SIGKILL: no cleanup, no exception handlers) resumes from its last checkpoint
to bit-identical final weights and history; a kill in the middle of writing a checkpoint leaves the previous
checkpoints intact (atomic writes) and the resume ignores and removes the partial file."""
import os, sys, signal, subprocess
from pathlib import Path
import torch, torch.nn as nn
from lbsharp import store
from lbsharp.training import train, plain_step
from lbsharp.store import checkpoints
from conftest import toy_mlp, toy_dataset

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KILL_AT = None      # update number at which `step` kills its own process (set in the child)
KILL_IN_SAVE = None # epoch whose checkpoint write is killed half-way (set in the child)
_n = [0]

def step(model, opt, xb, yb):
    "The plain step, plus a SIGKILL of this process at update `KILL_AT`."
    _n[0] += 1
    if KILL_AT is not None and _n[0] == KILL_AT: os.kill(os.getpid(), signal.SIGKILL)
    return plain_step(model, opt, xb, yb)

def run(ckdir=None, resume=False):
    "Seeded tiny run with BatchNorm and dropout (so the global random state matters too)."
    m, data = toy_mlp(8, 32, 3, bn='running', dropout=0.2), toy_dataset(500, 200, d=8, k=3)
    h = train(m, data, batch=64, epochs=6, quiet=True, checkpoint_dir=ckdir, resume=resume, step=step,
              augment=lambda xb: xb + 0.05*torch.randn_like(xb))
    return nn.utils.parameters_to_vector(m.parameters()).detach(), h

def _child(ckdir, kill_at=None, kill_in_save=None):
    code = (f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(ROOT)!r}]\n"
            f"import test_training_resume as t\n"
            f"t.KILL_AT = {kill_at!r}; t.KILL_IN_SAVE = {kill_in_save!r}\n"
            f"if t.KILL_IN_SAVE is not None: t.patch_save()\n"
            f"t.run({str(ckdir)!r})\n")
    r = subprocess.run([sys.executable, '-c', code], env={**os.environ, 'OMP_NUM_THREADS': '1'},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])

def patch_save():
    "Make the checkpoint of epoch `KILL_IN_SAVE` die half-way through writing its temporary file."
    orig = torch.save
    def save(obj, f, *a, **kw):
        if isinstance(obj, dict) and obj.get('epoch') == KILL_IN_SAVE:
            f.write(b'partial checkpoint bytes'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)
        return orig(obj, f, *a, **kw)
    store.torch.save = save

def _same(h1, h2):
    strip = lambda h: [{k: v for k, v in r.items() if k not in ('seconds', 'eval_seconds')} for r in h.log]
    return strip(h1) == strip(h2) and h1.stop == h2.stop

def test_kill_and_resume(tmp_path):
    w_ref, h_ref = run()
    _n[0] = 0
    _child(tmp_path, kill_at=20)                 # 500 = 7*64 + 52: 8 updates per epoch; killed in epoch 3
    assert [p.name for p in checkpoints(tmp_path)] == ['epoch_0000.pt', 'epoch_0001.pt', 'epoch_0002.pt']
    w, h = run(tmp_path, resume=True)
    assert torch.equal(w, w_ref) and _same(h, h_ref)
    assert len(checkpoints(tmp_path)) == 7

def test_kill_while_writing_checkpoint(tmp_path):
    w_ref, h_ref = run()
    _n[0] = 0
    _child(tmp_path, kill_in_save=3)
    assert [p.name for p in checkpoints(tmp_path)] == ['epoch_0000.pt', 'epoch_0001.pt', 'epoch_0002.pt']
    assert len(list(tmp_path.glob('epoch_0003.pt.*.tmp'))) == 1    # the partial write never became epoch_0003.pt
    w, h = run(tmp_path, resume=True)
    assert torch.equal(w, w_ref) and _same(h, h_ref)
    assert not list(tmp_path.glob('*.tmp'))
