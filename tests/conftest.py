import os
# Two pytest-xdist workers share this project's 2-core machines: one BLAS thread each, set before torch loads.
if os.environ.get('PYTEST_XDIST_WORKER'): os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('LBSHARP_QUIET', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
