"""One pytest test per notebook, run by nbdev's own runner.

Cells flagged with a `tst_flags` flag from settings.ini (`slow`) are skipped; set
`LBSHARP_TEST_FLAGS="slow"` to run them too. Notebooks whose name starts with `_` are scratch.
"""
import os
from pathlib import Path
import pytest
import nbdev.test as nbt  # the module, not the function: pytest would collect `test_nb` itself
from nbdev.config import get_config

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

def _flags():
    skip = get_config(path=ROOT).get('tst_flags', '').split()
    force = os.environ.get('LBSHARP_TEST_FLAGS', '').split()
    return skip, force

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb, monkeypatch):
    monkeypatch.setenv('LBSHARP_QUIET', '1')
    skip, force = _flags()
    ok, secs = nbt.test_nb(nb, skip_flags=skip, force_flags=force, showerr=True, basepath=ROOT)
    assert ok, f"{nb.name} failed (see the traceback above)"
