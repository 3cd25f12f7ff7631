"""Offline docs check: nbdev's notebook processing (what `nbdev_docs` feeds Quarto) plus an HTML export
of every page. Quarto itself only runs in the deploy workflow; here we assert that every `#| exec_doc`
figure cell produced an image and that every page converts to HTML."""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

def _n_exec_doc(nb_path):
    cells = json.loads(nb_path.read_text())['cells']
    return sum(bool(re.search(r'^#\|\s*exec_doc', ''.join(c['source']), re.M)) for c in cells if c['cell_type']=='code')

def _n_images(nb_path):
    cells = json.loads(nb_path.read_text())['cells']
    return sum(any(k.startswith('image/') for o in c.get('outputs', []) for k in o.get('data', {}))
               for c in cells if c['cell_type']=='code')

def test_docs_offline(tmp_path):
    "One test (not one per page): nbdev processes all notebooks into `_proc/` at once, so xdist workers must not race."
    import os
    from nbdev.serve import proc_nbs
    from nbconvert import HTMLExporter
    old = os.getcwd(); os.chdir(ROOT)
    try: proc = Path(proc_nbs(force=True, n_workers=0))
    finally: os.chdir(old)
    problems = []
    for nb in NBS:
        out = proc/nb.name
        if not out.exists(): problems.append(f"nbdev did not process {nb.name}"); continue
        want, got = _n_exec_doc(nb), _n_images(out)
        if got < want: problems.append(f"{nb.name}: {want} #| exec_doc figure cells but only {got} images")
        html, _ = HTMLExporter().from_filename(str(out))
        if '<html' not in html: problems.append(f"{nb.name}: HTML export failed")
        (tmp_path/f'{nb.stem}.html').write_text(html)
    assert not problems, '\n'.join(problems)
