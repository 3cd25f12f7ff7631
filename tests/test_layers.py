"""The package's layers point down: each module imports only from modules of earlier notebooks.

The order is the tutorial's: notebooks sorted by file name (`00_data`, `01_networks`, `01e_contract`, `02_training`,
`02a_hooks`, ..., `03_sharpness`, ...), each exporting one module (`#| default_exp NAME`). Two checks:
- statically (ast), every `import`/`from ... import` of an lbsharp module anywhere in a module — at the top or inside
  a function — names an earlier module, and none hides inside a function (no function-local imports to dodge a cycle);
- at run time, in a fresh interpreter (with the bare package, not its `__init__`, which gathers the public API),
  importing the modules one by one in notebook order never loads a later one.
Either failure names the offending import.
"""
import ast, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = 'lbsharp'


def module_order()->list[str]:
    "Module names in notebook order, from the `#| default_exp` line of each notebook."
    out = []
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            s = ''.join(c['source'])
            if c['cell_type'] == 'code' and s.startswith('#| default_exp'):
                out.append(s.split()[2]); break
    return out


ORDER = module_order()


def _imports(path:Path):
    "(line, imported lbsharp module or None for the package root, inside a function?) for every import in `path`."
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PKG or a.name.startswith(PKG + '.'):
                    yield node.lineno, (a.name.split('.')[1] if '.' in a.name else None), id(node) not in top
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level == 1: names = [mod] if mod else [a.name for a in node.names]
            elif node.level == 0 and (mod == PKG or mod.startswith(PKG + '.')):
                names = [mod.split('.')[1]] if '.' in mod else [a.name for a in node.names]
            else: continue
            for n in names: yield node.lineno, (n if n in ORDER else None), id(node) not in top


def test_order_is_known():
    assert ORDER[:9] == ['formats', 'data', 'networks', 'bars', 'store', 'parallel', 'evaluation', 'contract', 'training'], ORDER
    for m in ORDER: assert (ROOT/PKG/f'{m}.py').exists(), f"notebook exports {m} but {PKG}/{m}.py is missing: run nbdev_export"


def test_imports_point_down():
    bad = []
    for i, m in enumerate(ORDER):
        for line, dep, local in _imports(ROOT/PKG/f'{m}.py'):
            where = f"{PKG}/{m}.py:{line}"
            if dep is None: continue                    # the package root (its version) or a name of it
            if local: bad.append(f"{where} imports {PKG}.{dep} inside a function (move it to the module's imports)")
            if dep == m: continue
            if ORDER.index(dep) > i: bad.append(f"{where} imports {PKG}.{dep}, a later notebook than {m} (upward import)")
    assert not bad, '\n'.join(bad)


def test_fresh_interpreter_in_notebook_order():
    code = f"""
import importlib, sys, types
pkg = types.ModuleType('{PKG}'); pkg.__path__ = [{str(ROOT/PKG)!r}]; pkg.__file__ = {str(ROOT/PKG/'__init__.py')!r}
pkg.__version__ = 'test'; sys.modules['{PKG}'] = pkg    # the bare package: its __init__ gathers every module at once
order = {ORDER!r}
for i, m in enumerate(order):
    importlib.import_module('{PKG}.' + m)
    later = [o for o in order[i+1:] if '{PKG}.' + o in sys.modules]
    if later: sys.exit(f"importing {PKG}.{{m}} loaded the later module(s) {{later}}: an upward import")
print('ok')
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().endswith('ok'), r.stderr[-3000:] or r.stdout


def test_public_api_imports_in_a_fresh_interpreter():
    "`import lbsharp as lbs` works on its own and gives the names of `lbsharp.__all__`."
    r = subprocess.run([sys.executable, '-c', f"import {PKG} as lbs; missing = [n for n in lbs.__all__ if not hasattr(lbs, n)]; "
                        "assert not missing, missing; print('ok')"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().endswith('ok'), r.stderr[-3000:] or r.stdout


def test_no_pair_imports_each_other():
    deps = {m: {d for _, d, _ in _imports(ROOT/PKG/f'{m}.py') if d and d != m} for m in ORDER}
    pairs = sorted({tuple(sorted((a, b))) for a in deps for b in deps[a] if a in deps.get(b, ())})
    assert not pairs, f"modules importing each other: {pairs}"
