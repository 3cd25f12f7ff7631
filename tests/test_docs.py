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


_LINK = re.compile(r'\]\(([^)\s]+)(?:\s+"[^"]*")?\)|href="([^"]+)"')

def _pages()->set:
    "The page names the site publishes: nbdev's own rule (`03a_measure.ipynb` -> `measure.html`)."
    from nbdev.doclinks import _nbpath2html
    return {_nbpath2html(Path(nb.name)).name for nb in NBS}

def _internal_links(text:str):
    for m in _LINK.finditer(text):
        t = m.group(1) or m.group(2)
        if re.match(r'^[a-z][a-z0-9+.-]*:', t) or t.startswith(('#', '/')): continue   # external, mailto, anchors, absolute
        yield t.split('#')[0]

def test_internal_links_resolve():
    "Every relative link of every page (and of the README, which is the index page) names a published page or a file."
    pages, bad = _pages(), []
    docs = [(nb.name, ''.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown'))
            for nb in NBS] + [('README.md', (ROOT/'README.md').read_text())]
    for name, text in docs:
        for t in _internal_links(text):
            if t.endswith('.html'):
                if t not in pages: bad.append(f"{name}: link to {t!r}, which the site does not publish (pages: {sorted(pages)})")
            elif t and not (ROOT/'nbs'/t).exists(): bad.append(f"{name}: link to {t!r}, which is not a file under nbs/")
    assert not bad, '\n'.join(bad)


SECTIONS = ['Start here', 'Results', 'Measure your model', 'Library']

def test_sidebar_lists_every_page_once():
    "nbs/sidebar.yml (kept by nbdev because settings.ini has custom_sidebar = True) groups every page exactly once."
    import configparser, yaml
    cp = configparser.ConfigParser(); cp.read(ROOT/'settings.ini')
    assert cp['DEFAULT'].getboolean('custom_sidebar'), "settings.ini: custom_sidebar must be True, or nbdev_docs overwrites nbs/sidebar.yml"
    side = yaml.safe_load((ROOT/'nbs'/'sidebar.yml').read_text())['website']['sidebar']['contents']
    assert [s['section'] for s in side] == SECTIONS
    listed = [e for s in side for e in s['contents']]
    assert all(isinstance(e, str) for e in listed), "one level of sections only"
    dup = sorted({e for e in listed if listed.count(e) > 1})
    missing = sorted({nb.name for nb in NBS} - set(listed))
    unknown = sorted(set(listed) - {nb.name for nb in NBS})
    assert not (dup or missing or unknown), (f"nbs/sidebar.yml: listed twice {dup}; notebooks missing from it {missing} "
                                             f"(add each under one of {SECTIONS}); entries with no notebook {unknown}")
    assert side[0]['contents'][0] == 'index.ipynb'
