#!/usr/bin/env python
"""Regenerate a committed result: run one `#| slow` cell of a notebook, pinned, and report its cost.

Usage: OMP_NUM_THREADS=1 MKL_CBWR=AVX2,STRICT ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
       python .ci/run_slow_cell.py nbs/04_landscape.ipynb 9fe103fa

- refuses to run unless the numerics pins of `lbsharp.experiments.REPRODUCIBLE_ENV` and one thread are set
  (the cell records them with `environment()`);
- runs the cells above the slow cell (skipping the other slow cells) with IN_TEST set, so their demos are
  small, then the slow cell itself with IN_TEST unset, in the notebook's folder (it writes `results/...`);
- sets LBSHARP_REGENERATE=1: a slow cell does its work only under that switch (Run All without it reads the
  committed results);
- prints the slow cell's output and its wall and CPU seconds; the notebook file is not modified.
"""
import os, sys, re, time
from pathlib import Path
from execnb.nbio import read_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory

def _slow(cell): return re.search(r'^#\|\s*slow\b', cell.source, re.M) is not None

def main(fn, cell_id):
    from lbsharp.experiments import REPRODUCIBLE_ENV
    need = dict(REPRODUCIBLE_ENV, OMP_NUM_THREADS='1')
    bad = {k: os.environ.get(k) for k, v in need.items() if os.environ.get(k) != v}
    if bad: sys.exit(f"set {' '.join(f'{k}={v}' for k, v in need.items())} first (found {bad})")
    fn = Path(fn).resolve()
    nb = read_nb(fn)
    ids = [c.get('id') for c in nb.cells]
    if cell_id not in ids: sys.exit(f"{fn.name} has no cell with id {cell_id!r}")
    target = nb.cells[ids.index(cell_id)]
    if not _slow(target): sys.exit(f"cell {cell_id} of {fn.name} is not a `#| slow` cell")
    os.environ['LBSHARP_QUIET'] = '1'
    os.environ['IN_TEST'] = '1'
    with working_directory(fn.parent):
        k = CaptureShell(fn)
        for c in nb.cells[:ids.index(cell_id)]:
            if c.cell_type != 'code' or _slow(c): continue
            k.cell(c)
            if k.exc: raise k.exc
        del os.environ['IN_TEST']; k.run('IN_TEST = None')
        os.environ['LBSHARP_REGENERATE'] = '1'
        t0, c0 = time.perf_counter(), time.process_time()
        k.cell(target, verbose=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if k.exc: raise k.exc
    print(f"{fn.name} cell {cell_id}: {wall:.0f} s wall, {cpu:.0f} s CPU")

if __name__ == '__main__': main(*sys.argv[1:])
