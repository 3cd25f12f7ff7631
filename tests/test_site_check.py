"""The site check (.ci/site_check.py) on tiny sites whose answers are known: each rule fires on a page built to
break it, and a page built to meet every rule passes. The browser tests need Chromium (skipped without it)."""
import importlib.util, io, json, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT/'.ci'/'site_check.py'

@pytest.fixture(scope='module')
def sc():
    spec = importlib.util.spec_from_file_location('site_check', SCRIPT)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

def _png(record:bool, sc, tick_pt=7, dpi=100)->bytes:
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase
    orig = FigureCanvasBase.print_figure
    if record: sc._record_min_text()
    try:
        fig, ax = plt.subplots(figsize=(4, 3), dpi=dpi)
        ax.plot([0, 1], [0, 1]); ax.tick_params(labelsize=tick_pt); ax.set_xlabel('x', fontsize=12)
        ax.text(0.5, 0.5, '', fontsize=2)          # empty text is not drawn and must not count
        buf = io.BytesIO(); fig.savefig(buf, format='png'); plt.close(fig)
    finally: FigureCanvasBase.print_figure = orig
    return buf.getvalue()

def test_png_text_recorded_and_assumed(sc):
    "The recorded size is the smallest drawn font (7 pt at 100 dpi = 9.72 px); without it, 10 pt at the PNG's dpi."
    px, recorded = sc.png_text_px(_png(True, sc))
    assert recorded and px == pytest.approx(7*100/72, abs=0.01)
    px, recorded = sc.png_text_px(_png(False, sc, dpi=150))
    assert not recorded and px == pytest.approx(10*150/72, rel=0.01)
    assert sc.png_text_px(b'GIF89a') is None

def _site(tmp_path, pages:dict)->Path:
    site = tmp_path/'site'; site.mkdir()
    for name, body in pages.items():
        (site/name).write_text(f'<!doctype html><html><head><meta charset="utf-8"><style>body{{margin:0}} main{{width:800px;margin-left:250px}}'
                               f' pre{{white-space:pre;overflow:auto}}</style></head><body><main>{body}</main></body></html>')
    return site

def test_broken_links(sc, tmp_path):
    site = _site(tmp_path, {'index.html': '<h2 id="top">t</h2><a href="gap.html#verdict">ok</a> <a href="gap.html#nope">bad anchor</a>'
                                          ' <a href="missing.html">bad page</a> <a href="https://lbsharp.github.io/lbsharp/gap.html#verdict">abs ok</a>'
                                          ' <a href="https://lbsharp.github.io/lbsharp/gap.html#gone">abs bad</a> <a href="https://example.org/x.html#y">external</a>'
                                          ' <a href="#top">self</a> <a href="#nowhere">self bad</a>',
                            'gap.html': '<p id="verdict">v</p>'})
    bad = sc.broken_links(site, sc.scan(site), 'https://lbsharp.github.io/lbsharp/')
    assert sorted(bad) == ['index.html']
    assert [b.split(' ')[0] for b in bad['index.html']] == ['gap.html#nope', 'missing.html', 'https://lbsharp.github.io/lbsharp/gap.html#gone', '#nowhere']

need_browser = pytest.mark.skipif(not any(shutil.which(c) for c in ['chromium', 'chromium-browser', 'google-chrome']),
                                  reason="no Chromium (apt-get install chromium)")

def _fig(sc, caption=True, alt=True, width=None, record=True, tick_pt=10):
    import base64
    src = 'data:image/png;base64,' + base64.b64encode(_png(record, sc, tick_pt=tick_pt)).decode()
    img = f'<img src="{src}"' + (' alt="a line"' if alt else '') + (f' style="width:{width}px"' if width else '') + '>'
    return f'<figure>{img}<figcaption>The line.</figcaption></figure>' if caption else img

GOOD = '<h1>Gap</h1><p>Verdict first.</p><div class="cell"><details><summary>code</summary><pre>assert True</pre></details></div>{fig}<div class="cell"><div class="cell-output"><pre>short output</pre></div></div><table><tr><td>1</td></tr></table>'

@need_browser
def test_rules_fire_and_good_page_passes(sc, tmp_path):
    long = 'LB/SB ratio ' + ' '.join(['1.234567']*40)
    bad = ('<h1>Reproduction</h1><div style="height:1800px">machinery</div>'
           f'<div class="cell"><div class="cell-output"><pre>{long}</pre></div></div>'
           + _fig(sc, caption=False, alt=False) + _fig(sc, width=100) + '<img src="nothere.png" alt="x">'
           '<table style="width:1200px"><tr><td>wide</td></tr></table>'
           '<p>[`load_runs`](https://lbsharp.github.io/lbsharp/experiments.html#load_runs)</p>'
           '<div class="cell"><pre>Markdown("see [the gap](gap.html)")</pre></div>')   # code, not a raw link
    site = _site(tmp_path, {'reproduction.html': bad, 'gap.html': GOOD.format(fig=_fig(sc)), 'index.html': '<p>home</p>'})
    rows, problems = sc.check(site)
    rules = sorted({p.split(': ')[1] for p in problems if p.startswith('reproduction.html')})
    assert rules == ['alt', 'axis-text', 'caption', 'cut', 'first-figure', 'image', 'raw-link'], problems
    assert not [p for p in problems if not p.startswith('reproduction.html')], problems
    r = {x['page']: x for x in rows}
    assert r['reproduction']['first_fig'] > 1800 and r['gap']['first_fig'] < 300
    assert r['reproduction']['out_over'] == 1 and r['gap']['out_over'] == 0
    assert r['reproduction']['raw_links'] == 1
    # the 100 px wide copy of a 400 px figure drawn with 10 pt ticks at 100 dpi: 13.9 px x 0.25 = 3.5 px
    assert r['reproduction']['min_text'] == pytest.approx(10*100/72*100/400, abs=0.1)
    assert r['gap']['min_text'] == pytest.approx(10*100/72, abs=0.1)
    assert (r['gap']['code_lines'], r['gap']['test_lines']) == (0, 0)     # folded code is not visible code

@need_browser
def test_cli_exit_codes(tmp_path):
    "Run as CI runs it: exit 0 and a metrics table on a good site, exit 1 with one FAIL line per problem on a bad one."
    spec = importlib.util.spec_from_file_location('site_check', SCRIPT)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    good = _site(tmp_path, {'index.html': '<p>home</p>', 'gap.html': GOOD.format(fig=_fig(m))})
    r = subprocess.run([sys.executable, str(SCRIPT), '--site', str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '| gap |' in r.stdout and '0 problem(s)' in r.stdout
    (good/'gap.html').write_text((good/'gap.html').read_text().replace(' alt="a line"', ''))
    r = subprocess.run([sys.executable, str(SCRIPT), '--site', str(good), '--json', str(tmp_path/'m.json')], capture_output=True, text=True)
    assert r.returncode == 1
    assert [l for l in r.stdout.splitlines() if l.startswith('FAIL')] == ['FAIL gap.html: alt: image 1 has no alt text (cell option #| fig-alt:)']
    assert json.loads((tmp_path/'m.json').read_text())['problems'] == ['gap.html: alt: image 1 has no alt text (cell option #| fig-alt:)']
    r = subprocess.run([sys.executable, str(SCRIPT), '--site', str(tmp_path/'nothing')], capture_output=True, text=True)
    assert r.returncode == 2 and 'no index.html there' in r.stderr

need_render = pytest.mark.skipif(importlib.util.find_spec('smalldocs') is None or not Path('/usr/share/javascript/katex/katex.min.js').exists(),
                                 reason="the offline render needs smalldocs (pip) and libjs-katex (apt)")

def _nb(cells):
    import nbformat
    nb = nbformat.v4.new_notebook(); nb.metadata = {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}
    nb.cells = cells; return nbformat.writes(nb)

@need_browser
@need_render
def test_render_tiny_project(sc, tmp_path):
    "The whole path (nbdev processing, smalldocs, output-file names, sidebar, browser) on a two-page nbdev project that meets every rule."
    import base64, nbformat.v4 as v4, configparser
    proj = tmp_path/'proj'; (proj/'nbs').mkdir(parents=True); (proj/'tinylib').mkdir()
    (proj/'tinylib'/'__init__.py').write_text('')
    cp = configparser.ConfigParser(interpolation=None); cp.read(ROOT/'settings.ini')
    d = cp['DEFAULT']; d['repo'] = d['lib_name'] = d['lib_path'] = 'tinylib'; d['title'] = 'tinylib'
    with open(proj/'settings.ini', 'w') as f: cp.write(f)
    for f in ['_quarto.yml', 'styles.css']: shutil.copy(ROOT/'nbs'/f, proj/'nbs'/f)
    (proj/'nbs'/'sidebar.yml').write_text('website:\n  sidebar:\n    contents:\n      - section: Start here\n        contents: [index.ipynb]\n'
                                          '      - section: Results\n        contents: [05a_reproduction.ipynb]\n')
    png = base64.b64encode(_png(False, sc)).decode()
    fig = v4.new_code_cell('#| fig-cap: "Test accuracy against the batch size."\n#| fig-alt: "A rising line."\nplot()',
                           outputs=[v4.new_output('display_data', data={'image/png': png, 'text/plain': '<Figure>'})])
    (proj/'nbs'/'index.ipynb').write_text(_nb([v4.new_markdown_cell('# tinylib\n\n> A tiny site.'),
        v4.new_markdown_cell('See [the reproduction](reproduction.html#the-figure) and $x^2$.')]))
    (proj/'nbs'/'05a_reproduction.ipynb').write_text(_nb([v4.new_markdown_cell('# Reproduction\n\n> Results first.'),
        v4.new_markdown_cell('## The figure'), fig,
        v4.new_code_cell('print(1)', outputs=[v4.new_output('stream', name='stdout', text='LB/SB ' + ' '.join(['1.2345']*40) + '\n')])]))
    r = subprocess.run([sys.executable, str(SCRIPT), '--root', str(proj), '--out', str(tmp_path/'out'), '--json', str(tmp_path/'m.json')],
                       capture_output=True, text=True, cwd=proj)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {x['page']: x for x in json.loads((tmp_path/'m.json').read_text())['pages']}
    assert sorted(rows) == ['index', 'reproduction']            # output-file names, not 05a_reproduction
    assert rows['reproduction']['figs'] == 1 and rows['reproduction']['first_fig'] < 1500 and rows['reproduction']['out_over'] == 0
    assert rows['index']['math'] == 1                             # KaTeX rendered offline
    html = (tmp_path/'out'/'stage'/'_site'/'index.html').read_text()
    assert 'Results' in html and 'reproduction.html' in html      # the committed sidebar, renamed

def test_problems_name_the_source_cell(sc, tmp_path):
    "A processed notebook loses and reorders cells; a problem still names the source notebook's cell with the same code."
    src = [{'cell_type': 'markdown', 'source': '# T'}, {'cell_type': 'code', 'source': '#| hide\nimport x'},
           {'cell_type': 'code', 'source': '#| exec_doc\n#| fig-cap: "c"\nplot(1)'}, {'cell_type': 'code', 'source': 'plot(2)'}]
    (tmp_path/'05a_r.ipynb').write_text(json.dumps({'cells': src}))
    proc = [{'cell_type': 'raw', 'source': '---\ntitle: T\n---'}, {'cell_type': 'code', 'source': '#| fig-cap: "c"\nplot(1)'},
            {'cell_type': 'code', 'source': 'plot(2)'}, {'cell_type': 'code', 'source': 'new()'}]
    m = sc._source_cells(proc, tmp_path/'05a_r.ipynb', Path('05a_r.ipynb'))
    assert m == {1: 'nbs/05a_r.ipynb cell 2', 2: 'nbs/05a_r.ipynb cell 3'}
    sc.SOURCE['r.html'] = m
    assert sc._where('r.html', 'cell-2') == ' (cell-2, nbs/05a_r.ipynb cell 3)' and sc._where('r.html', 'cell-3') == ' (cell-3)'
