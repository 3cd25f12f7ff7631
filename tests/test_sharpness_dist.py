"""ε-sharpness, Hessian eigenvalues and trace under `torchrun` (gloo on CPU) equal one process's.

Each process evaluates whole chunks of the training set (chunk k on process k mod P) and loss, gradient and
Hessian-vector products are all-reduced in float64, so the chunks that define f with BatchNorm in batch mode are
unchanged. The network has BatchNorm using batch statistics; 603 samples in chunks of 100 give 7 chunks, the last of
3 samples, split 4/3 over 2 processes.
"""
import os, sys, json, subprocess
from pathlib import Path
from conftest import toy_mlp, teacher_xy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

def setup():
    X, Y = teacher_xy(603, 8, 3)
    return toy_mlp(8, 16, 3, bn='batch'), X, Y

def measures()->dict:
    "Everything compared, in this process (1 process) or under torchrun."
    from lbsharp.box import model_sharpness
    from lbsharp.hessian import Hessian
    model, X, Y = setup()
    out = {}
    for name, kw in dict(full=dict(), subspace=dict(p=5)).items():
        r = model_sharpness(model, (X, Y), eps=1e-3, iters=4, chunk=100, **kw)
        out[f'phi_{name}'], out[f'f0_{name}'] = r.phi, r.f0
    for retain in (False, True):
        H = Hessian(model, (X, Y), chunk=100, retain=retain)
        out[f'top_{retain}'] = float(H.eigenvalues(k=1, tol=1e-8)[0])
        out[f'trace_{retain}'], out[f'trace_se_{retain}'] = H.trace(samples=8)
    return out

def worker(path):
    import torch.distributed as dist
    from lbsharp.parallel import dist_info
    dist.init_process_group('gloo')
    try:
        assert dist_info() == (int(os.environ['RANK']), 2)
        out = measures()
        if dist.get_rank() == 0: Path(path).write_text(json.dumps(out))
    finally: dist.destroy_process_group()

def test_two_processes_equal_one(tmp_path):
    one = measures()
    script = tmp_path/'w.py'
    script.write_text("import sys\nfrom test_sharpness_dist import worker\nworker(sys.argv[1])\n")
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'LBSHARP_QUIET': '1', 'PYTHONPATH': f"{HERE}{os.pathsep}{ROOT}"}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script),
                        str(tmp_path/'two.json')], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    two = json.loads((tmp_path/'two.json').read_text())
    assert two.keys() == one.keys()
    for k in one:   # a trace is a mean of probes vᵀHv that cancel (here ±4 to 0.05): float32 products agree to the probes' scale
        scale = abs(one[k]) + (one[k.replace('trace', 'trace_se')] if k.startswith('trace_') and '_se_' not in k else 0)
        assert abs(two[k] - one[k]) <= 1e-6*scale, (k, two[k], one[k])
    assert one['phi_full'] > 0 and one['top_False'] > 0
