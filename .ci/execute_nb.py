#!/usr/bin/env python
"""Execute notebooks in place so the committed copies carry light, reproducible text outputs.

Usage: python .ci/execute_nb.py nbs/02_training.ipynb [more.ipynb ...]

- runs with LBSHARP_QUIET=1 (no progress bars in outputs) and the notebook's folder as working directory;
- skips `#| slow` cells (they regenerate committed results) and `#| eval: false` cells;
- drops the outputs of `#| exec_doc` cells and every image output: the docs build redraws figures;
- finishes with nbdev_clean on the file.
"""
import os, sys, re, subprocess
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory

def _directives(cell):
    return {m.group(1) for m in re.finditer(r'^#\|\s*([\w-]+)', cell.source, re.M)}

def _skip(cell):
    if cell.cell_type != 'code': return True
    d = _directives(cell)
    return 'slow' in d or re.search(r'^#\|\s*eval:\s*false', cell.source, re.M) is not None

def execute(fn):
    fn = Path(fn).resolve()
    os.environ['LBSHARP_QUIET'] = '1'
    nb = read_nb(fn)
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    with working_directory(fn.parent):
        k = CaptureShell(fn)
        k.run_all(nb, exc_stop=True, preproc=_skip)
    for c in nb.cells:
        if c.cell_type != 'code': continue
        if 'exec_doc' in _directives(c): c.outputs = []
        c.outputs = [o for o in c.outputs if not any(m.startswith('image/') for m in o.get('data', {}))]
    nb.metadata = {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    write_nb(nb, fn)
    subprocess.run([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(fn)], check=True)
    print(f'executed {fn.name}')

if __name__ == '__main__':
    for f in sys.argv[1:]: execute(f)
