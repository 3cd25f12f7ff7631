#!/usr/bin/env python
"""Site check (issue #25): render the docs offline, open every page in headless Chromium at 1,280 px, and
fail on what a reader would see broken.

    python .ci/site_check.py                 # render nbs/ offline (nbdev's processing, then smalldocs) and check it
    python .ci/site_check.py --site _docs    # check a site that is already built (e.g. Quarto's, before publishing)
    python .ci/site_check.py --json m.json   # also write the per-page metrics

Rendering without Quarto: nbdev's own processing (`proc_nbs`: show_doc, exec_doc cells, `#| hide`, doclinks) into
`_proc/`, then `smalldocs` (one pure-Python package from PyPI that reads Quarto's `_quarto.yml`, cell options
`fig-cap`/`fig-alt`, and writes Quarto's markup and cosmo grid). smalldocs ignores the `output-file:` front matter
nbdev sets, so each processed notebook is copied under its output name (`05a_reproduction.ipynb` ->
`reproduction.ipynb`) and the sidebar's entries are renamed the same way. Its grid is set to Quarto's defaults for
`page-layout: article` (sidebar 250 px, body 800 px, margin 250 px). Maths is rendered by Debian's libjs-katex
(copied into the site) instead of the CDN; the browser never reaches the network.

The browser: Debian's `chromium` (or $CHROMIUM), run once per page as `--headless --dump-dom` on a copy of the page
with a probe script appended; the probe measures the laid-out page at 1,280 x 1,500 px after `load` and writes JSON
into the DOM. No driver package and no browser download are needed.

Rules (one line per problem; exit 1 if any):
- link:    a link from one page to another page of the site (relative, or absolute under the site's URL) names a
           page that does not exist or an anchor (`#id`) that the target page does not have.
- image:   an image in a page's content that does not load in the browser.
- math:    a formula that KaTeX could not render.
- first-figure: on a results page (RESULTS) the first figure's top edge is below FIRST_SCREEN px.
- cut:     on the index and the results pages, a code-output block (`pre` in a cell's output) is wider than its box,
           so its right part is hidden; anywhere, a table wider than the content column with no scrolling box around it.
- axis-text: a figure whose smallest text, as rendered, is under MIN_TEXT_PX px. Rendered size = (smallest font size
           drawn in the image, in the image's pixels) x (rendered width / natural width). The smallest font size
           drawn is read from the PNG's `lbsharp:min_text_px` text chunk, which this script's render writes for every
           figure matplotlib draws while nbdev executes the pages (smallest font size of any visible, non-empty Text
           artist, in points, x the saving dpi / 72). An image without that chunk (committed outputs, Quarto's build)
           is assumed to use matplotlib's default smallest size, 10 pt, at the dpi in its pHYs chunk (72 if none);
           the metrics table marks such pages with `~`.
- alt / caption: a figure without alt text, or without a caption (Quarto's `#| fig-cap:`/`#| fig-alt:` cell options).
- raw-link: Markdown link syntax `[text](target)` printed as text: in a signature (a backticked symbol in a docment
           comment), an output or prose; not in shown input code, where it is a string literal.

Metrics per page (printed as a table): page length, top of the first figure, code blocks and tables that overflow
their box (whether or not they scroll), smallest rendered axis text, broken links/anchors, raw Markdown links, and
the visible test share: of the non-blank, non-comment lines of code shown on the page (cell inputs, not outputs or
signatures; code folded away in a closed <details> is not visible), the share that are test lines, i.e. start
with `assert`, call a fastcore-style `test_*(` function (`test_eq`, `test_close`, `test_fail`, ...), or use
`ExceptionExpected`.

ALLOW lists (page, rule) pairs where a rule cannot apply; each entry says why.
"""
import argparse, base64, configparser, html.parser, json, os, re, shutil, struct, subprocess, sys, tempfile, zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 1500
FIRST_SCREEN = 1500          # px: the first figure of a results page must start above this
MIN_TEXT_PX = 9.0            # px: smallest axis text as rendered
RESULTS = ('reproduction', 'gap', 'curvature', 'remedies')   # results pages: output names, without .html
HEADLINE = ('index',) + RESULTS                              # pages whose output blocks must not be cut
DEFAULT_TEXT_PT = 10.0       # matplotlib's default smallest text (font.size, tick and legend 'medium')
PNG_KEY = 'lbsharp:min_text_px'
KATEX_DIR = Path('/usr/share/javascript/katex')
# Quarto's defaults for page-layout: article (grid: sidebar-width 250px, body-width 800px, margin-width 250px)
QUARTO_GRID = ":root, #quarto-content { --sd-sidebar-width: 250px; --sd-body-width: 800px; --sd-margin-width: 250px; }\n"
ALLOW = {
    # ('page', 'rule'): 'why the rule cannot apply',
}

def die(msg): print(f"site_check: {msg}", file=sys.stderr); sys.exit(2)

def settings():
    cp = configparser.ConfigParser(); cp.read(ROOT/'settings.ini'); return cp['DEFAULT']

# ---------------------------------------------------------------- rendering without Quarto
def _record_min_text():
    "Make every PNG matplotlib saves carry the smallest font size drawn in it (in image pixels) as a text chunk."
    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.text import Text
    orig = FigureCanvasBase.print_figure
    if getattr(orig, '_site_check', False): return
    def print_figure(self, filename, dpi=None, *args, **kw):
        fmt = (kw.get('format') or (filename if isinstance(filename, str) else '')).lower()
        if fmt.endswith('png'):
            fig = self.figure
            d = dpi if isinstance(dpi, (int, float)) else matplotlib.rcParams['savefig.dpi']
            d = fig.dpi if d == 'figure' else d
            try: fig.draw_without_rendering()        # tick labels get their text only when the figure is drawn
            except Exception: pass
            sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
            if sizes: kw['metadata'] = {**(kw.get('metadata') or {}), PNG_KEY: f'{min(sizes)*d/72:.2f}'}
        return orig(self, filename, dpi, *args, **kw)
    print_figure._site_check = True
    FigureCanvasBase.print_figure = print_figure

SOURCE = {}   # page -> {processed cell index: 'nbs/x.ipynb cell j'}, so problems name the cell to edit

def _source_cells(cells, src:Path, rel)->dict:
    "Map each processed cell to the source notebook's cell with the same code (directives aside)."
    if not src.exists(): return {}
    body = lambda c: tuple(l.strip() for l in ''.join(c['source']).splitlines() if l.strip() and not l.lstrip().startswith('#|'))
    want = {}
    for j, c in enumerate(json.loads(src.read_text())['cells']): want.setdefault((c['cell_type'], body(c)), j)
    return {i: f"nbs/{rel.as_posix()} cell {want[(c['cell_type'], body(c))]}" for i, c in enumerate(cells)
            if body(c) and (c['cell_type'], body(c)) in want}

def _where(page, cell:str)->str:
    "' (cell-12, nbs/05a_reproduction.ipynb cell 14)' from smalldocs' cell id."
    if not cell: return ''
    m = re.match(r'cell-(\d+)$', cell); src = SOURCE.get(page, {}).get(int(m.group(1))) if m else None
    return f" ({cell}" + (f", {src}" if src else '') + ")"

def render(out:Path)->Path:
    "nbdev's processing of nbs/ into _proc/, then smalldocs into `out`/_site; returns the site folder."
    try: import smalldocs.site  # noqa: F401
    except ImportError: die("smalldocs is not installed (pip install smalldocs==0.5.4): it renders the pages without Quarto")
    if not (KATEX_DIR/'katex.min.js').exists():
        die(f"{KATEX_DIR}/katex.min.js is missing: install Debian's libjs-katex (apt-get install -y libjs-katex)")
    import yaml
    os.environ.setdefault('LBSHARP_QUIET', '1')
    _record_min_text()
    from nbdev.serve import proc_nbs
    from nbdev.quarto import _nbdev_yml
    old = os.getcwd(); os.chdir(ROOT)
    try: proc = Path(proc_nbs(force=True, n_workers=0))
    finally: os.chdir(old)
    cfg = settings()
    nbs = ROOT/cfg.get('nbs_path', 'nbs')
    stage = out/'stage'
    if stage.exists(): shutil.rmtree(stage)
    shutil.copytree(proc, stage, ignore=shutil.ignore_patterns('*.ipynb'))
    names = {}
    for nb in sorted(proc.rglob('*.ipynb')):
        d = json.loads(nb.read_text()); name = nb.stem
        for c in d['cells'][:1]:            # nbdev's front matter (a raw cell): output-file is the published name
            src = c['source'] if isinstance(c['source'], list) else c['source'].splitlines(keepends=True)
            if c['cell_type'] == 'raw':
                outs = [re.match(r'output-file:\s*(\S+)\.html', l.strip()) for l in src]
                name = next((m.group(1) for m in outs if m), name)
                c['source'] = [l for l, m in zip(src, outs) if not m]   # smalldocs does not read it: no warning
        rel = nb.relative_to(proc)
        names[str(rel)] = str(rel.with_name(name + '.ipynb'))
        (stage/names[str(rel)]).parent.mkdir(parents=True, exist_ok=True)
        (stage/names[str(rel)]).write_text(json.dumps(d))
        SOURCE[str(Path(names[str(rel)]).with_suffix('.html'))] = _source_cells(d['cells'], nbs/rel, rel)
    # nbdev.yml as nbdev_docs writes it; the sidebar: the committed sidebar.yml, else nbdev's generated one
    (stage/'nbdev.yml').write_text(_nbdev_yml.format(doc_path='_site', **{k: cfg.get(k, '') for k in
        ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']}))
    sb = stage/'sidebar.yml'
    if sb.exists():
        y = yaml.safe_load(sb.read_text())
        def ren(c):
            if isinstance(c, str): return names.get(c, c)
            if isinstance(c, dict):
                return {k: (ren(v) if k in ('contents', 'href') else v) for k, v in c.items()}
            if isinstance(c, list): return [ren(x) for x in c]
            return c
        y['website']['sidebar'] = ren(y['website']['sidebar'])
        sb.write_text(yaml.safe_dump(y, sort_keys=False))
    else:
        contents = sorted(names.values(), key=lambda n: (n != 'index.ipynb', [k for k, v in names.items() if v == n][0]))
        sb.write_text(yaml.safe_dump({'website': {'sidebar': {'contents': contents}}}, sort_keys=False))
    css = stage/'styles.css'
    css.write_text(QUARTO_GRID + (css.read_text() if css.exists() else ''))
    r = subprocess.run([sys.executable, '-c', 'import sys; from smalldocs.cli import main; sys.exit(main())',
                        'render', '--quiet', str(stage)], capture_output=True, text=True)
    warn = [l for l in (r.stdout + r.stderr).splitlines() if l.strip() and 'output-file' not in l]
    if r.returncode: die("smalldocs failed:\n" + '\n'.join(warn))
    site = stage/'_site'
    shutil.copytree(KATEX_DIR, site/'site_libs'/'katex', dirs_exist_ok=True)
    for js in (site/'site_libs'/'katex'/'contrib').glob('*.js'):       # Debian ships contrib/ unminified only
        if not js.name.endswith('.min.js'): shutil.copy(js, js.with_name(js.stem + '.min.js'))
    for p in site.rglob('*.html'):
        t = p.read_text()
        depth = len(p.relative_to(site).parts) - 1
        t2 = re.sub(r'https://cdn\.jsdelivr\.net/npm/katex@[^/"]+/dist', '../'*depth + 'site_libs/katex', t)
        if t2 != t: p.write_text(t2)
    return site

# ---------------------------------------------------------------- static checks: links and anchors
class _Scan(html.parser.HTMLParser):
    "Ids, links, and the images inside <main> (document order), of one page."
    def __init__(self):
        super().__init__(); self.ids, self.links, self.imgs, self._main = set(), [], [], 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k): self.ids.add(a[k])
        if tag == 'main': self._main += 1
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if tag == 'img' and self._main: self.imgs.append(a.get('src') or '')
    def handle_endtag(self, tag):
        if tag == 'main': self._main -= 1

def scan(site:Path)->dict:
    res = {}
    for p in sorted(site.rglob('*.html')):
        if p.name.startswith('.'): continue
        s = _Scan(); s.feed(p.read_text()); res[p.relative_to(site).as_posix()] = s
    return res

def broken_links(site:Path, pages:dict, base_url:str)->dict:
    "Per page: links to a missing page of the site or to an anchor the target page lacks."
    bad = {}
    for page, s in pages.items():
        for href in s.links:
            u = urlsplit(href)
            if u.scheme or u.netloc:
                full = f"{u.scheme}://{u.netloc}{u.path}"
                if not base_url or not full.startswith(base_url): continue   # external
                path = full[len(base_url):].lstrip('/') or 'index.html'
            elif href.startswith(('mailto:', 'javascript:')): continue
            else:
                if not u.path: path = page
                else: path = os.path.normpath(os.path.join(os.path.dirname(page), unquote(u.path))).replace(os.sep, '/')
            if path.endswith('/'): path += 'index.html'
            if not path.endswith('.html'):
                if not (site/path).exists(): bad.setdefault(page, []).append(f"{href} (no such file)")
                continue
            if path not in pages: bad.setdefault(page, []).append(f"{href} (no such page)"); continue
            frag = unquote(u.fragment)
            if frag and frag not in pages[path].ids: bad.setdefault(page, []).append(f"{href} (no anchor #{frag} in {path})")
    return bad

# ---------------------------------------------------------------- images: the smallest text drawn in a PNG
def png_text_px(data:bytes):
    "(smallest text in image px, True if recorded / False if assumed), or None if not a PNG."
    if not data.startswith(b'\x89PNG\r\n\x1a\n'): return None
    i, dpi, rec = 8, 72.0, None
    while i + 8 <= len(data):
        n, kind = struct.unpack('>I4s', data[i:i+8]); body = data[i+8:i+8+n]; i += 12 + n
        if kind == b'tEXt' and b'\0' in body:
            k, v = body.split(b'\0', 1)
            if k.decode('latin-1') == PNG_KEY: rec = float(v)
        elif kind == b'iTXt' and body.startswith(PNG_KEY.encode() + b'\0'):
            rest = body[len(PNG_KEY)+1:]; comp = rest[0]; rest = rest[2:]
            _, _, rest = rest.split(b'\0', 2)                        # language tag, translated keyword
            rec = float(zlib.decompress(rest) if comp else rest)
        elif kind == b'pHYs' and len(body) == 9 and body[8] == 1:
            dpi = struct.unpack('>I', body[:4])[0] * 0.0254
        elif kind == b'IEND': break
    return (rec, True) if rec is not None else (DEFAULT_TEXT_PT * dpi / 72, False)

def img_bytes(site:Path, page:str, src:str):
    if src.startswith('data:image/png;base64,'): return base64.b64decode(src.split(',', 1)[1])
    if src.startswith('data:') or urlsplit(src).scheme: return b''
    p = site/os.path.dirname(page)/unquote(urlsplit(src).path)
    return p.read_bytes() if p.is_file() else b''

# ---------------------------------------------------------------- the browser
PROBE = r"""
<script>
window.addEventListener('load', () => setTimeout(() => {
  const main = document.querySelector('main') || document.body;
  const mr = main.getBoundingClientRect();
  const visible = el => el.checkVisibility ? el.checkVisibility() : el.getClientRects().length > 0;  // closed <details> hide
  const R = {height: document.documentElement.scrollHeight, innerWidth: window.innerWidth, mainWidth: Math.round(mr.width)};
  R.imgs = [...main.querySelectorAll('img')].map(i => {
    const r = i.getBoundingClientRect(), fig = i.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    return {top: Math.round(r.top + scrollY), w: r.width, nw: i.naturalWidth, ok: i.complete && i.naturalWidth > 0,
            shown: visible(i) && r.width > 0 && r.height > 0,
            alt: (i.getAttribute('alt') || '').trim(), cap: cap ? cap.textContent.trim() : '',
            cell: (i.closest('.cell') || {}).id || '', src: (i.getAttribute('src') || '').slice(0, 60)};
  });
  const scrolls = el => { for (let a = el; a && a !== main.parentElement; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX; if (o === 'auto' || o === 'scroll') return a; } return null; };
  R.pres = [...main.querySelectorAll('pre')].map(p => {
    const out = !!p.closest('.cell-output'), doc = !!p.closest('.cell-output-markdown');
    const over = p.scrollWidth > p.clientWidth + 1 || p.getBoundingClientRect().right > mr.right + 1;
    return {kind: doc ? 'signature' : out ? 'output' : 'code', over, text: p.textContent.split('\n')[0].slice(0, 70)};
  });
  R.tables = [...main.querySelectorAll('table')].map(t => {
    const s = scrolls(t), box = (s || main).getBoundingClientRect(), r = t.getBoundingClientRect();
    const over = t.scrollWidth > t.clientWidth + 1 || r.right > box.right + 1 || r.width > mr.width + 1;
    return {over, scrolls: !!(s && s !== main), text: t.textContent.trim().replace(/\s+/g, ' ').slice(0, 70)};
  });
  const code = [...main.querySelectorAll('pre')].filter(p => !p.closest('.cell-output') && p.closest('.cell')
                                                           && visible(p));   // folded code is not visible
  const lines = code.flatMap(p => p.textContent.split('\n')).map(l => l.trim()).filter(l => l && !l.startsWith('#'));
  const test = /^(assert\b|test_\w*\s*\(|with\s+ExceptionExpected)|[;:]\s*(assert\b|test_\w*\s*\()/;
  R.codeLines = lines.length; R.testLines = lines.filter(l => test.test(l)).length;
  const raw = /\[[^\]\n]{1,80}\]\((?:https?:\/\/|[\w.\/-]+\.html)[^)\s]*\)/g;
  R.rawLinks = [];
  const walk = document.createTreeWalker(main, NodeFilter.SHOW_ELEMENT);
  for (let el = walk.currentNode; el; el = walk.nextNode()) {   // innermost blocks only: pre, p, td, li, headings
    if (!/^(PRE|P|TD|TH|LI|H[1-6]|FIGCAPTION|DT|DD)$/.test(el.tagName) || el.parentElement.closest('pre')) continue;
    for (const l of (el.innerText.match(raw) || []))
      R.rawLinks.push({text: l, where: el.tagName !== 'PRE' ? 'text' : el.closest('.cell-output-markdown') ? 'signature'
                                      : el.closest('.cell-output') ? 'output' : 'code', cell: (el.closest('.cell') || {}).id || ''});
  }
  R.math = main.querySelectorAll('.katex').length; R.mathErrors = main.querySelectorAll('.katex-error').length;
  const o = document.createElement('script'); o.type = 'application/json'; o.id = 'site-check-result';
  o.textContent = JSON.stringify(R); document.body.appendChild(o);
}, 300));
</script>
"""

def chromium():
    for c in [os.environ.get('CHROMIUM'), 'chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']:
        if c and shutil.which(c): return shutil.which(c)
    die("no Chromium found: install Debian's chromium (apt-get install -y chromium) or set $CHROMIUM")

def measure(browser:str, page:Path)->dict:
    probe = page.with_name(f'.sitecheck-{page.name}')
    probe.write_text(page.read_text().replace('</body>', PROBE + '</body>', 1) if '</body>' in page.read_text()
                     else page.read_text() + PROBE)
    try:
        r = subprocess.run([browser, '--headless', '--no-sandbox', '--disable-gpu', '--disable-extensions',
                            '--no-first-run', '--hide-scrollbars', f'--window-size={WIDTH},{HEIGHT}',
                            '--virtual-time-budget=15000', '--dump-dom', probe.resolve().as_uri()],
                           capture_output=True, text=True, timeout=120)
    finally: probe.unlink(missing_ok=True)
    m = re.search(r'<script type="application/json" id="site-check-result">(.*?)</script>', r.stdout, re.S)
    if not m: return {'error': f"the browser returned no measurement (rc {r.returncode}): {r.stderr.strip()[-300:]}"}
    return json.loads(m.group(1).replace('&lt;', '<').replace('&gt;', '>').replace('&amp;', '&'))

# ---------------------------------------------------------------- the check
def check(site:Path, only=None):
    cfg = settings()
    base_url = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).replace('%(user)s', cfg.get('user', '')).replace('%(repo)s', cfg.get('repo', ''))
    pages = scan(site)
    names = [p for p in pages if not p.startswith('site_libs/') and (not only or p[:-5] in only)]
    bad_links = broken_links(site, pages, base_url.rstrip('/') + '/' if base_url else '')
    browser = chromium()
    with ThreadPoolExecutor(int(os.environ.get('SITE_CHECK_JOBS', 2))) as ex:
        ms = dict(zip(names, ex.map(lambda n: measure(browser, site/n), names)))
    problems, rows = [], []
    def prob(page, rule, msg):
        if (page, rule) not in ALLOW: problems.append(f"{page}: {rule}: {msg}")
    for page in names:
        m, stem = ms[page], page[:-5]
        for l in bad_links.get(page, []): prob(page, 'link', f"broken link {l}")
        if 'error' in m: prob(page, 'browser', m['error']); continue
        srcs = pages[page].imgs
        texts, assumed = [], False
        for k, im in enumerate(m['imgs']):
            where = f"image {k+1}" + _where(page, im['cell'])
            if not im['ok']: prob(page, 'image', f"{where} does not load: {im['src']}"); continue
            if not im['alt']: prob(page, 'alt', f"{where} has no alt text (cell option #| fig-alt:)")
            if not im['cap']: prob(page, 'caption', f"{where} has no caption (cell option #| fig-cap:)")
            t = png_text_px(img_bytes(site, page, srcs[k])) if k < len(srcs) and im['shown'] else None
            if t and im['nw']:
                px = t[0] * im['w'] / im['nw']; texts.append(px); assumed |= not t[1]
                if px < MIN_TEXT_PX:
                    prob(page, 'axis-text', f"{where}: smallest text {px:.1f} px as rendered (shown at "
                         f"{im['w']/im['nw']:.2f} of its {im['nw']} px width; {t[0]:.1f} px in the image"
                         f"{'' if t[1] else ', assumed 10 pt'}); need >= {MIN_TEXT_PX:g} px")
        shown = [im for im in m['imgs'] if im['shown']]          # an image in folded content has no position
        first = shown[0]['top'] if shown else None
        if stem in RESULTS:
            if first is None: prob(page, 'first-figure', "a results page with no figure")
            elif first > FIRST_SCREEN: prob(page, 'first-figure', f"first figure at {first} px, below the first screen ({FIRST_SCREEN} px)")
        if stem in HEADLINE:
            for p in m['pres']:
                if p['kind'] == 'output' and p['over']: prob(page, 'cut', f"output block cut at the right edge: {p['text']!r}")
        for t in m['tables']:
            if t['over'] and not t['scrolls']: prob(page, 'cut', f"table wider than the column, no scroll box: {t['text']!r}")
        m['rawLinks'] = [l for l in m['rawLinks'] if l['where'] != 'code']   # a link in a string literal of shown code is code
        for l in m['rawLinks']: prob(page, 'raw-link', f"Markdown link printed as text in a {l['where']}" + _where(page, l['cell']) + f": {l['text']}")
        if m['mathErrors']: prob(page, 'math', f"{m['mathErrors']} formula(s) KaTeX could not render")
        rows.append(dict(page=stem, length=m['height'], first_fig=first, figs=len(m['imgs']),
                         code_over=sum(p['over'] for p in m['pres'] if p['kind'] != 'output'),
                         out_over=sum(p['over'] for p in m['pres'] if p['kind'] == 'output'),
                         tables_over=sum(t['over'] for t in m['tables']), tables=len(m['tables']),
                         min_text=(round(min(texts), 1) if texts else None), text_assumed=assumed,
                         broken=len(bad_links.get(page, [])), raw_links=len(m['rawLinks']),
                         test_share=(round(m['testLines']/m['codeLines'], 2) if m['codeLines'] else 0.0),
                         code_lines=m['codeLines'], test_lines=m['testLines'], math=m['math']))
    return rows, problems

def table(rows)->str:
    cols = [('page', 'page'), ('length', 'length px'), ('first_fig', '1st fig px'), ('figs', 'figs'),
            ('code_over', 'code/sig over'), ('out_over', 'output over'), ('tables_over', 'tables over'),
            ('min_text', 'min axis px'), ('broken', 'broken links'), ('raw_links', 'raw links'),
            ('test_share', 'test share'), ('math', 'math')]
    def cell(r, k):
        v = r[k]
        if k == 'tables_over': return f"{v}/{r['tables']}"
        if k == 'min_text' and v is not None and r['text_assumed']: return f"~{v}"
        if k == 'test_share': return f"{v:.0%} ({r['test_lines']}/{r['code_lines']})"
        return '-' if v is None else str(v)
    out = ['| ' + ' | '.join(h for _, h in cols) + ' |', '|' + '---|'*len(cols)]
    out += ['| ' + ' | '.join(cell(r, k) for k, _ in cols) + ' |' for r in rows]
    return '\n'.join(out)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--site', type=Path, help="check this built site instead of rendering nbs/ offline")
    ap.add_argument('--out', type=Path, help="where to render (default: a temporary folder, removed after)")
    ap.add_argument('--pages', nargs='*', help="only these pages (output names without .html)")
    ap.add_argument('--json', type=Path, help="write the per-page metrics and problems here")
    ap.add_argument('--root', type=Path, help="the nbdev project to render (default: this repository)")
    a = ap.parse_args(argv)
    global ROOT
    if a.root: ROOT = a.root.resolve()
    if not (ROOT/'settings.ini').exists(): die(f"--root {ROOT}: no settings.ini there (an nbdev project's root)")
    if a.site:
        if not (a.site/'index.html').exists(): die(f"--site {a.site}: no index.html there; build the site first")
        return report(*check(a.site, a.pages), a.json)
    tmp = a.out or Path(tempfile.mkdtemp(prefix='site_check-'))
    try: return report(*check(render(tmp), a.pages), a.json)
    finally:
        if not a.out: shutil.rmtree(tmp, ignore_errors=True)

def report(rows, problems, js):
    print(table(rows))
    if js: js.write_text(json.dumps(dict(pages=rows, problems=problems), indent=1))
    for p in problems: print(f"FAIL {p}")
    print(f"site_check: {len(rows)} pages, {len(problems)} problem(s)" + (f"; allowed: {ALLOW}" if ALLOW else ''))
    return 1 if problems else 0

if __name__ == '__main__': sys.exit(main())
