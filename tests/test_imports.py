"""The import graph of lbsharp points one way: each module imports only modules of earlier notebooks, never the package
itself (`import lbsharp`, whose `__init__` imports every module) and never a later module — not even through `@patch`,
which adds a method to a class of another module without an import line showing the edge. Read from the source (ast),
so an import inside a function counts too; the order is the notebooks' (`nbs/NN*_name.ipynb` with `#| default_exp`)."""
import ast, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT/'lbsharp'

def notebook_order()->list:
    "Module names in notebook order, from each exported notebook's `#| default_exp`."
    out = []
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        src = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        m = re.search(r'^#\| default_exp (\w+)', src, re.M)
        if m: out.append(m.group(1))
    return out

def edges(path:Path)->list:
    "(kind, target) of every lbsharp module `path` reaches: 'import' for import lines, 'patch' for a @patch of a class defined elsewhere."
    tree = ast.parse(path.read_text())
    own = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [('import', a.name.split('.')[1] if '.' in a.name else 'lbsharp') for a in n.names if a.name.split('.')[0] == 'lbsharp']
        elif isinstance(n, ast.ImportFrom):
            mod = n.module or ''
            if n.level == 1 or mod.split('.')[0] == 'lbsharp':
                out.append(('import', mod.split('.')[-1] if mod and mod != 'lbsharp' else 'lbsharp'))
        elif isinstance(n, ast.FunctionDef) and any('patch' in ast.unparse(d) for d in n.decorator_list):
            ann = n.args.args[0].annotation if n.args.args else None
            cls = ast.unparse(ann) if ann is not None else None
            if cls and cls not in own: out.append(('patch', cls))
    return out

# Edges known to point up, each with what removes it; `test_known_edges_still_exist` fails once one is gone, to strike it.
KNOWN = {}   # (module, target) edges tolerated for now, each with the reason; none today

def test_notebook_order_covers_every_module():
    mods = {p.stem for p in PKG.glob('*.py')} - {'__init__', '_modidx'}
    assert set(notebook_order()) == mods

@pytest.mark.parametrize('mod', notebook_order())
def test_no_edge_points_up(mod):
    order = notebook_order()
    for kind, target in edges(PKG/f'{mod}.py'):
        if (mod, target) in KNOWN: continue
        assert kind != 'patch', f"lbsharp/{mod}.py patches {target}, a class of another module: define the method with the class"
        assert target != 'lbsharp', f"lbsharp/{mod}.py imports the package itself, which imports every module: import the module it needs"
        assert target in order, f"lbsharp/{mod}.py imports lbsharp.{target}, which no notebook exports"
        assert order.index(target) < order.index(mod), (f"lbsharp/{mod}.py imports lbsharp.{target}, a later notebook's module "
                                                        f"({order.index(target)} > {order.index(mod)}): the graph must point down")

def test_the_checker_sees_each_kind_of_edge(tmp_path):
    "A module with each forbidden edge: the package, a module by absolute name, and a @patch of a class it imports."
    f = tmp_path/'m.py'
    f.write_text("import lbsharp\nfrom lbsharp.gap import x\nfrom .report import y\ndef f():\n    from . import data\n"
                 "from fastcore.basics import patch\nfrom .sharpness import Hessian\n@patch\ndef mm(self:Hessian, V): pass\n"
                 "class Own: pass\n@patch\ndef g(self:Own): pass\n")
    assert sorted(edges(f)) == sorted([('import', 'lbsharp'), ('import', 'gap'), ('import', 'report'), ('import', 'lbsharp'),
                                       ('import', 'sharpness'), ('patch', 'Hessian')])

def test_known_edges_still_exist():
    for mod, target in KNOWN: assert ('import', target) in edges(PKG/f'{mod}.py'), f"{mod} -> {target} is gone: strike it from KNOWN"

def exported(path:Path)->list:
    "The names in a module's `__all__` (nbdev writes it from the `#| export` cells: what the module defines)."
    for n in ast.parse(path.read_text()).body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == '__all__' for t in n.targets):
            return list(ast.literal_eval(n.value))
    return []

def homes(paths)->dict:
    "name -> the modules whose `__all__` holds it."
    out = {}
    for p in paths:
        for name in exported(p): out.setdefault(name, []).append(p.stem)
    return out

def test_each_public_name_has_one_home():
    "No two modules export the same name (one `main`, one `sharpness`, ...): a reader knows where a name lives."
    twice = {k: v for k, v in homes(sorted(p for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx'))).items() if len(v) > 1}
    assert not twice, f"names exported by more than one module: {twice}; keep one definition and import it"

def test_the_home_checker_sees_a_name_twice(tmp_path):
    (tmp_path/'a.py').write_text("__all__ = ['main', 'f']\n"); (tmp_path/'b.py').write_text("__all__ = ['main']\n")
    assert homes([tmp_path/'a.py', tmp_path/'b.py']) == {'main': ['a', 'b'], 'f': ['a']}

def test_no_package_name_hides_a_module():
    "`lbs.<name>` is never a function or class named like a module, so `lbsharp.<name>` means one thing."
    import lbsharp
    mods = {p.stem for p in PKG.glob('*.py')} - {'__init__', '_modidx'}
    hidden = sorted(n for n in lbsharp.__all__ if n in mods and not isinstance(getattr(lbsharp, n), type(lbsharp)))
    assert not hidden, f"{', '.join('lbsharp.' + n for n in hidden)}: package-level names that hide the modules of the same name; rename one"
