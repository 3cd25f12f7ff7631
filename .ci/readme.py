#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb without Quarto (nbdev_readme needs Quarto, which CI lacks).

Markdown cells are copied; visible code cells become ```python blocks followed by their text outputs;
`#| hide` cells and directive lines are dropped. CI regenerates the file and fails if it changed.
"""
import json, re
from pathlib import Path

root = Path(__file__).resolve().parents[1]
nb = json.loads((root/'nbs'/'index.ipynb').read_text())
src = lambda c: ''.join(c['source'])
out = []
for c in nb['cells']:
    s = src(c)
    if c['cell_type'] == 'markdown': out.append(s.strip()); continue
    if re.search(r'^#\|\s*hide', s, re.M): continue
    code = '\n'.join(l for l in s.splitlines() if not l.startswith('#|')).strip()
    if code and not re.search(r'^#\|\s*echo:\s*false', s, re.M): out.append(f'```python\n{code}\n```')
    for o in c.get('outputs', []):
        txt = o.get('text') or o.get('data', {}).get('text/markdown') or o.get('data', {}).get('text/plain')
        if txt:
            txt = ''.join(txt).rstrip()
            out.append(txt if 'text/markdown' in o.get('data', {}) else f'```\n{txt}\n```')
head = '<!-- Generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file. -->'
(root/'README.md').write_text(head + '\n\n' + '\n\n'.join(out) + '\n')
