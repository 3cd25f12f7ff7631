"""lbsharp's public API: `import lbsharp as lbs` gives what a user needs in one namespace.

The modules are the tutorial's chapters (formats → data → networks → bars → store → parallel → evaluation → contract →
training → hooks → estimators → hessian → subspace → noise → remedies → box (ε-sharpness) → measure → curvature →
operators → measures → loss_landscape → presets → tracking → provenance → runs → protocols → experiments →
reproduction → cluster → rank → gap_analysis → remedy_analysis → gap → paper_claims → cli); this file only gathers their
public entry points.
No module is named like a name of this namespace, so `lbs.sharpness`, `lbs.landscape` and `lbs.report` are the
functions and `lbsharp.box`, `lbsharp.loss_landscape`, `lbsharp.reproduction` the modules (tests/test_imports.py).
"""
__version__ = "0.1.0"

# Maintained by hand (nbdev only updates the version line above); tests/test_api.py checks every name.
from .data import load, Dataset
from .networks import build, NETWORKS
from .evaluation import evaluate
from .training import train, init_model, History
from .remedies import REMEDIES, train_kwargs
from .noise import noise_scale
from .contract import train_tensors
from .hessian import Hessian
from .box import Sharpness
from .measure import sharpness, hessian_spectrum, Spectrum
from .estimators import hutchinson
from .curvature import spectral_density, hutchpp, SpectralDensity
from .operators import GGN, Fisher, layer_spectra, LayerSpectra
from .loss_landscape import landscape, parametric, plot_line, plot_contour
from .presets import Experiment, preset, PRESETS, REMEDY_PRESETS
from .experiments import run, load_runs
from .reproduction import report, table

__all__ = ['load', 'Dataset', 'build', 'NETWORKS', 'train', 'init_model', 'evaluate', 'History', 'REMEDIES', 'train_kwargs',
           'noise_scale', 'Hessian', 'Sharpness', 'train_tensors', 'sharpness', 'hessian_spectrum', 'Spectrum',
           'spectral_density', 'hutchinson', 'hutchpp', 'SpectralDensity', 'GGN', 'Fisher', 'layer_spectra', 'LayerSpectra',
           'landscape', 'parametric', 'plot_line', 'plot_contour', 'Experiment', 'preset', 'PRESETS', 'REMEDY_PRESETS', 'run',
           'load_runs', 'report', 'table']
