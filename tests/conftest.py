"""Shared test fixtures: the toy networks, their data and their training, built in one place.

The builders are plain functions that test modules import (`from conftest import toy_mlp, ...`), so module-level
tables and the subprocesses some tests start can use them too; every one is seeded (the same call gives the same
tensors). Objects shared as they are (a loaded data set) are pytest fixtures at the end."""
import os
# Two pytest-xdist workers share this project's 2-core machines: one BLAS thread each, set before torch loads.
if os.environ.get('PYTEST_XDIST_WORKER'): os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('LBSHARP_QUIET', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')

import pytest, torch, torch.nn as nn, torch.nn.functional as F

BN = {None: None, 'batch': dict(track_running_stats=False), 'running': dict()}   # BatchNorm1d options per bn setting


def toy_mlp(d_in:int=5,  # input features
            width:int=12,  # hidden units per hidden layer
            d_out:int=3,  # outputs (classes)
            depth:int=1,  # hidden layers
            act=nn.ReLU,  # activation class
            bn:str|None=None,  # None, 'batch' (BatchNorm1d with batch statistics) or 'running' (running statistics)
            dropout:float=0.,  # dropout after each activation (0: none)
            seed:int=0,  # torch.manual_seed before the weights are drawn
            dtype=torch.float32,  # parameter dtype
           )->nn.Sequential:  # Linear, [BatchNorm1d], act, [Dropout] per hidden layer, then Linear
    "A seeded toy MLP: `torch.manual_seed(seed)`, then the layers in order (the global stream continues from there)."
    if bn not in BN: raise ValueError(f"toy_mlp: bn={bn!r} is not one of {list(BN)}")
    torch.manual_seed(seed)
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width)] + ([nn.BatchNorm1d(width, **BN[bn])] if bn else []) + [act()]
        layers += [nn.Dropout(dropout)] if dropout else []
        d = width
    return nn.Sequential(*layers, nn.Linear(d, d_out)).to(dtype)


def toy_xy(n:int,  # samples
           d:int|tuple=5,  # features (or the per-sample shape)
           k:int=3,  # classes
           seed:int=0,  # seed of the private generator (the global random stream is not touched)
           dtype=torch.float32,  # input dtype
          )->tuple:  # (X, Y): X of shape (n, *d), Y int64 in [0, k)
    "Gaussian inputs and uniformly random labels, drawn X then Y from `torch.Generator().manual_seed(seed)`."
    g, shape = torch.Generator().manual_seed(seed), (d,) if isinstance(d, int) else tuple(d)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, k, (n,), generator=g)


def teacher_xy(n:int,  # samples
               d:int=8,  # features
               k:int=3,  # classes
               seed:int=0,  # seed of the private generator
              )->tuple:  # (X, Y): float32 X (n, d), Y = argmax(X @ W) for a Gaussian W (d, k)
    "Gaussian inputs labelled by a random linear teacher: a learnable problem (X drawn first, then W)."
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    return X, (X @ torch.randn(d, k, generator=g)).argmax(1)


def toy_dataset(n:int=400,  # training samples
                n_test:int=100,  # test samples
                d:int=40,  # features (40: MNIST-1D's input size)
                k:int=10,  # classes (10: MNIST-1D's)
                labels:str='teacher',  # 'teacher' (teacher_xy on n+n_test, split) or 'random' (toy_xy train, then test)
                seed:int=0,  # seed of the private generator
               ):  # an lbsharp Dataset named 'toy'
    "A tiny in-memory lbsharp `Dataset` shaped like MNIST-1D by default (40 features, 10 classes)."
    from lbsharp.data import Dataset   # here, not at the top: collecting the tests does not import the package
    if labels == 'teacher':
        X, Y = teacher_xy(n + n_test, d, k, seed)
        return Dataset('toy', X[:n], Y[:n], X[n:], Y[n:], [str(c) for c in range(k)])
    if labels != 'random': raise ValueError(f"toy_dataset: labels={labels!r} is not 'teacher' or 'random'")
    g = torch.Generator().manual_seed(seed)
    Xtr, Ytr = torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)
    Xte, Yte = torch.randn(n_test, d, generator=g), torch.randint(0, k, (n_test,), generator=g)
    return Dataset('toy', Xtr, Ytr, Xte, Yte, [str(c) for c in range(k)])


def adam_fit(model:nn.Module,  # trained in place
             X:torch.Tensor,  # all training inputs (one full batch)
             Y:torch.Tensor,  # their labels
             steps:int,  # Adam steps
             lr:float=1e-2,  # Adam learning rate
            )->nn.Module:  # the same model, trained
    "Full-batch Adam on the cross-entropy for `steps` steps: the small trained model the measurement tests start from."
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps): opt.zero_grad(); F.cross_entropy(model(X), Y).backward(); opt.step()
    return model


@pytest.fixture(scope='session')
def small():
    "MNIST-1D with 1000 samples (`lbsharp.data.load`), loaded once per session: the data of the remedy resume tests."
    from lbsharp.data import load
    return load('mnist1d', n_samples=1000)
