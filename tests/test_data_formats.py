"""lbsharp.data beyond the notebook: search order, the loaders on tiny files in the real layouts, the (mocked)
torchvision download path, and the IDX reader of lbsharp.formats checked against torchvision's own reader on the real
Fashion-MNIST files when installed."""
import gzip, pickle, struct
from pathlib import Path
import numpy as np
import pytest
import torch
import lbsharp.data as D
from lbsharp.formats import read_idx

FASHION = Path('/usr/share/datasets/fashion-mnist')


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    "Search nothing installed on the machine: cache and system directories inside tmp_path, no $LBSHARP_DATA."
    monkeypatch.delenv('LBSHARP_DATA', raising=False)
    monkeypatch.setattr(D, 'CACHE_DIR', tmp_path/'cache')
    monkeypatch.setattr(D, 'SYSTEM_DIR', tmp_path/'system')
    return tmp_path


def write_idx(path, a):
    "IDX writer from the format description: magic 00 00 08 ndim, big-endian sizes, uint8 data."
    a = np.ascontiguousarray(a, dtype=np.uint8)
    raw = bytes([0, 0, 8, a.ndim]) + struct.pack(f'>{a.ndim}I', *a.shape) + a.tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(gzip.compress(raw) if str(path).endswith('.gz') else raw)


def write_mnist(d, fill, ntr=4, nte=2, gz=True):
    "Four IDX files whose images are all `fill`, labels 0, 1, 2, ..."
    for split, n in (('train', ntr), ('t10k', nte)):
        sfx = '.gz' if gz else ''
        write_idx(Path(d)/f'{split}-images-idx3-ubyte{sfx}', np.full((n, 28, 28), fill))
        write_idx(Path(d)/f'{split}-labels-idx1-ubyte{sfx}', np.arange(n) % 10)


def write_cifar10(d, n=2):
    d = Path(d); d.mkdir(parents=True, exist_ok=True)
    for f in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        body = {b'batch_label': f.encode(), b'data': np.full((n, 3072), 51, np.uint8), b'labels': list(range(n)), b'filenames': [b'a.png']*n}
        (d/f).write_bytes(pickle.dumps(body, protocol=2))
    (d/'batches.meta').write_bytes(pickle.dumps({b'label_names': [b'airplane', b'automobile', b'bird', b'cat', b'deer', b'dog',
                                                                  b'frog', b'horse', b'ship', b'truck'], b'num_vis': 3072}, protocol=2))


def test_search_order(isolated, monkeypatch):
    tmp = isolated
    write_mnist(tmp/'root/mnist', 255)
    write_mnist(tmp/'env/MNIST/raw', 51, gz=False)   # torchvision layout, uncompressed
    write_mnist(tmp/'cache/mnist', 102)
    monkeypatch.setenv('LBSHARP_DATA', str(tmp/'env'))
    assert D.load('mnist', root=tmp/'root').Xtr.max().item() == 1.0          # root first
    d = D.load('mnist')                                                       # then $LBSHARP_DATA
    assert d.Xtr.max().item() == pytest.approx(0.2) and d.meta['source'] == str(tmp/'env/MNIST/raw')
    monkeypatch.delenv('LBSHARP_DATA')
    assert D.load('mnist').Xtr.max().item() == pytest.approx(0.4)             # then the cache
    (tmp/'empty').mkdir()                                                     # a root without the files falls
    assert D.load('mnist', root=tmp/'empty').meta['source'] == str(tmp/'cache/mnist')  # through, and meta says so


def test_prefers_uncompressed_copy(isolated):
    d = isolated/'r/MNIST/raw'
    write_mnist(d, 255); write_mnist(d, 0, gz=False)   # torchvision keeps both
    assert D.load('mnist', root=isolated/'r').Xtr.max().item() == 0.0


def test_loaders_read_the_real_layouts(isolated):
    "Each loader on tiny files in the layouts lbsharp searches: pixels / 255 and labels exactly, class names, provenance."
    rng, r = np.random.default_rng(0), isolated/'r'
    arrs = {f: rng.integers(0, 256, (n, 28, 28)) if 'images' in f else rng.integers(0, 10, n)
            for f, n in zip(D._MNIST_FILES, (7, 7, 3, 3))}
    for f, a in arrs.items(): write_idx(r/'mnist'/f, a)                           # gzipped, in <root>/mnist
    for f, a in arrs.items(): write_idx(r/'FashionMNIST/raw'/f[:-3], a)           # uncompressed, torchvision's layout
    m = D.load('mnist', root=r)
    assert m.Xtr.shape == (7, 1, 28, 28) and m.Xtr.dtype == torch.float32 and m.Ytr.dtype == torch.int64
    assert torch.equal(m.Xtr[:, 0]*255, torch.tensor(arrs['train-images-idx3-ubyte.gz'], dtype=torch.float32))
    assert m.Yte.tolist() == arrs['t10k-labels-idx1-ubyte.gz'].tolist() and m.meta['source'] == str(r/'mnist')
    f = D.load('fmnist', root=r)
    assert f.name == 'fashion-mnist' and f.classes[9] == 'Ankle boot' and torch.equal(f.Xte, m.Xte)
    assert f.meta['source'] == str(r/'FashionMNIST/raw') and f.meta['preprocessing'] == D.PIXELS_255
    write_cifar10(r/'cifar-10-batches-py', n=3)
    c = D.load('cifar-10', root=r)
    assert c.Xtr.shape == (15, 3, 32, 32) and c.Xte.shape == (3, 3, 32, 32) and c.classes[:2] == ['airplane', 'automobile']
    assert c.Xtr.max().item() == pytest.approx(0.2) and c.Ytr.tolist() == [0, 1, 2]*5 and c.meta['labels'] == 'labels'
    d = r/'cifar100'; d.mkdir()
    for split, n in (('train', 4), ('test', 2)):
        (d/split).write_bytes(pickle.dumps({b'data': np.zeros((n, 3072), np.uint8), b'fine_labels': [99, 0, 5, 1][:n],
                                            b'coarse_labels': [0]*n}, protocol=2))
    (d/'meta').write_bytes(pickle.dumps({b'fine_label_names': [f'f{i}'.encode() for i in range(100)]}, protocol=2))
    c = D.load('cifar100', root=r)
    assert (c.n_classes, c.Ytr.tolist(), c.Yte.tolist(), c.meta['labels']) == (100, [99, 0, 5, 1], [99, 0], 'fine_labels')
    (d/'meta').write_bytes(pickle.dumps({b'fine_label_names': [b'a']*10}, protocol=2))
    with pytest.raises(ValueError, match="lists 10 classes, cifar100 has 100"): D.load('cifar100', root=r)


class FakeTV:
    "Stands in for a torchvision dataset class: records the call and writes the files where torchvision would."
    calls = []
    def __init__(self, root, train=True, download=False):
        FakeTV.calls.append((type(self).__name__, root, train, download))
        if type(self).__name__ == 'MNIST': write_mnist(Path(root)/'MNIST/raw', 255, gz=False)
        else: write_cifar10(Path(root)/'cifar-10-batches-py')

class MNIST(FakeTV): pass
class CIFAR10(FakeTV): pass


@pytest.mark.parametrize('name,cls,shape', [('mnist', MNIST, (2, 1, 28, 28)), ('cifar10', CIFAR10, (2, 3, 32, 32))])
def test_download_goes_through_torchvision_then_reads_the_files(isolated, monkeypatch, name, cls, shape):
    import torchvision.datasets as tvd
    monkeypatch.setattr(tvd, cls.__name__, cls)
    FakeTV.calls.clear()
    with pytest.raises(FileNotFoundError, match='download=True'): D.load(name)
    d = D.load(name, root=isolated/'new', download=True)           # an explicit root is created and used
    assert FakeTV.calls == [(cls.__name__, str(isolated/'new'), False, True)]
    assert d.Xte.shape == shape and d.meta['source'].startswith(str(isolated/'new'))
    D.load(name, root=isolated/'new', download=True)               # files present: no second download
    assert len(FakeTV.calls) == 1
    d = D.load(name, download=True)                                # no root: into the first writable base, the cache
    assert FakeTV.calls[-1][1] == str(isolated/'cache') and d.meta['source'].startswith(str(isolated/'cache'))


def test_download_failure_is_explained(isolated, monkeypatch):
    import torchvision.datasets as tvd
    def offline(*a, **k): raise RuntimeError('Error downloading train-images-idx3-ubyte.gz')
    monkeypatch.setattr(tvd, 'MNIST', offline)
    with pytest.raises(RuntimeError, match='check the internet connection'): D.load('mnist', download=True)


def test_device_and_loader_options():
    d = D.load('mnist1d', n_samples=100, seed=0, device='cpu')
    assert d.Xtr.shape == (80, 40) and d.meta['source'].startswith('generated: mnist1d')
    with pytest.raises(TypeError, match="unknown option"): D.load('fashion-mnist', seed=0)


@pytest.mark.skipif(not (FASHION/'t10k-images-idx3-ubyte.gz').exists(), reason='dataset-fashion-mnist not installed')
def test_idx_reader_matches_torchvision_on_real_files(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file
    for f, reader in (('t10k-images-idx3-ubyte', read_image_file), ('t10k-labels-idx1-ubyte', read_label_file)):
        (tmp_path/f).write_bytes(gzip.decompress((FASHION/f'{f}.gz').read_bytes()))
        np.testing.assert_array_equal(read_idx(FASHION/f'{f}.gz'), reader(str(tmp_path/f)).numpy())
