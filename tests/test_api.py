"""The public API: `import lbsharp as lbs`, and the README's "Measure your own model" block, executed as written."""
import json, re
from pathlib import Path
import lbsharp as lbs

ROOT = Path(__file__).resolve().parent.parent


def _block(title:str)->str:
    "The first ```python block after the markdown heading `title` of nbs/index.ipynb (README.md is generated from it)."
    text = '\n'.join(''.join(c['source']) for c in json.loads((ROOT/'nbs'/'index.ipynb').read_text())['cells']
                     if c['cell_type'] == 'markdown')
    after = text[text.index(f'## {title}'):]
    return re.search(r'```python\n(.*?)```', after, re.S).group(1)


def test_readme_block_runs_as_written():
    code = _block('Measure your own model')
    assert code in (ROOT/'README.md').read_text(), "README.md is stale: run `python .ci/readme.py`"
    ns = {}
    exec(compile(code, 'README: Measure your own model', 'exec'), ns)
    r, h, line = ns['r'], ns['h'], ns['line']
    assert r.phi >= 0 and r.fmax >= r.f0 and 'index order' in r.data
    assert h.eigenvalues[0] > 0 and h.data == r.data
    assert len(line['train']['loss']) == len(line['x'])


def test_one_meaning_per_name():
    from lbsharp.measure import sharpness, hessian_spectrum
    from lbsharp.loss_landscape import landscape
    from lbsharp.experiments import run, measure_model
    assert lbs.sharpness is sharpness and lbs.hessian_spectrum is hessian_spectrum and lbs.landscape is landscape
    assert lbs.run is run and callable(measure_model)
    assert not hasattr(__import__('lbsharp.experiments').experiments, 'measure'), "experiments.measure was renamed measure_model"


def test_readme_dict_batch_block_runs_as_written():
    "The README's dict-batch / transformer block: φ and the top eigenvalue equal those of the same model fed tensors."
    import torch
    code = _block('Batches that are dicts, outputs that are objects (transformers)')
    assert code in (ROOT/'README.md').read_text(), "README.md is stale: run `python .ci/readme.py`"
    ns = {}
    exec(compile(code, 'README: dict batches', 'exec'), ns)
    r, h, tf, rows = ns['r'], ns['h'], ns['tf'], ns['rows']
    assert r.phi > 0 and r.fmax >= r.f0 and h.eigenvalues[0] > 0
    X, Y = torch.stack([b['input_ids'] for b in rows]), torch.tensor([b['labels'] for b in rows])
    assert all(bool((b['attention_mask'] == 1).all()) for b in rows)
    class Plain(torch.nn.Module):      # the same weights behind a tensor-in, tensor-out forward
        def __init__(self, m): super().__init__(); self.m = m
        def forward(self, x): return self.m(x, torch.ones_like(x))['logits']
    r2 = lbs.sharpness(Plain(tf), (X, Y), eps=1e-3)
    assert abs(r2.f0 - r.f0) <= 1e-6*abs(r.f0) and abs(r2.phi - r.phi) <= 1e-6*abs(r.phi), (r.f0, r2.f0, r.phi, r2.phi)
