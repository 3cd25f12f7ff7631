#!/usr/bin/env python
"""Execute notebooks in place so the committed copies carry light, reproducible text outputs.

Usage: python .ci/execute_nb.py nbs/02_training.ipynb [more.ipynb ...]

- runs with LBSHARP_QUIET=1 (no progress bars in outputs) and the notebook's folder as working directory;
- skips `#| slow` cells (they regenerate committed results) and `#| eval: false` cells;
- drops the outputs of `#| exec_doc` cells and every image output (the docs build redraws figures), except the
  page's lead figure: the first `#| exec_doc` cell with a `#| fig-cap` keeps its image, re-encoded as a 256-colour
  PNG at 1x and only if under 60 KB, so the notebook shows its key figure on GitHub without bloating the repository;
- finishes with nbdev_clean on the file.
"""
import os, sys, re, io, base64, subprocess
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

KEEP_BYTES = 60_000   # the largest lead-figure PNG kept in a committed notebook

def _small_png(b64:str, width:int|None=None)->str|None:
    "The PNG `b64` at its display `width` (retina halved) in 256 colours, base64; None if still over `KEEP_BYTES`."
    from PIL import Image
    im = Image.open(io.BytesIO(base64.b64decode(b64))).convert('RGB')
    if width and im.width > 1.5*width: im = im.resize((int(width), round(im.height*width/im.width)), Image.LANCZOS)
    buf = io.BytesIO(); im.quantize(256).save(buf, 'PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() <= KEEP_BYTES else None

def _lead(nb):
    "The first `#| exec_doc` cell with a `#| fig-cap`: the page's key figure."
    return next((c for c in nb.cells if c.cell_type == 'code' and 'exec_doc' in _directives(c)
                 and re.search(r'^#\|\s*fig-cap:', c.source, re.M)), None)

def execute(fn):
    fn = Path(fn).resolve()
    os.environ['LBSHARP_QUIET'] = '1'
    nb = read_nb(fn)
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    with working_directory(fn.parent):
        k = CaptureShell(fn)
        k.run_all(nb, exc_stop=True, preproc=_skip)
    lead = _lead(nb)
    for c in nb.cells:
        if c.cell_type != 'code': continue
        if c is lead:
            keep = [o for o in c.outputs if 'image/png' in o.get('data', {})][:1]
            png = _small_png(keep[0]['data']['image/png'], keep[0].get('metadata', {}).get('image/png', {}).get('width')) if keep else None
            if png: keep[0]['data'] = {'image/png': png}; keep[0]['metadata'] = {}
            else: print(f"{fn.name}: lead figure not kept ({'no image' if not keep else f'over {KEEP_BYTES:,} bytes'})")
            c.outputs = keep if png else []
            continue
        if 'exec_doc' in _directives(c): c.outputs = []
        c.outputs = [o for o in c.outputs if not any(m.startswith('image/') for m in o.get('data', {}))]
    nb.metadata = {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    write_nb(nb, fn)
    subprocess.run([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(fn)], check=True)
    print(f'executed {fn.name}')

if __name__ == '__main__':
    for f in sys.argv[1:]: execute(f)
