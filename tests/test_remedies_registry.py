"""Plain pytest checks of the remedies registry (`lbsharp.remedies`): every remedy yields valid `train` arguments, errors name the
valid choices, the presets are valid experiments, and a run with a remedy resumes exactly from a checkpoint."""
import inspect
import pytest, torch
from lbsharp.training import train, init_model
from lbsharp.remedies import REMEDIES, train_kwargs, remedy_options
from lbsharp.presets import REMEDY_PRESETS, exp_from_dict

@pytest.fixture(scope='module')
def sb_hist(small): return train(init_model('mlp-mnist1d', 0), small, batch=100, epochs=2, quiet=True)

def test_every_remedy_gives_train_arguments(small, sb_hist):
    valid = set(inspect.signature(train).parameters)
    for name in REMEDIES:
        kw = train_kwargs(name, small, 0.1, sb_history=sb_hist)
        assert set(kw) <= valid, (name, kw)
        for k, v in kw.items():
            if callable(v): assert 'object at 0x' not in repr(v), f"{name}: {k} needs a stable repr for resume checks"

def test_errors_list_the_valid_choices(small):
    with pytest.raises(ValueError, match='known remedies: none, augment'): train_kwargs('flat', small, 0.1)
    with pytest.raises(ValueError, match=r"valid options: \['iters', 'lam'\]"): train_kwargs('conservative', small, 0.1, steps=3)
    assert remedy_options('asam') == {'rho': 0.5, 'eta': 0.01}

def test_presets_are_valid_experiments():
    for name, over in REMEDY_PRESETS.items():
        e = exp_from_dict({'name': name, **over})
        assert e.remedy in REMEDIES

@pytest.mark.parametrize('name', ['augment', 'sam', 'dynamic-sampling'])
def test_resume_with_a_remedy_is_exact(small, tmp_path, name):
    kw = train_kwargs(name, small, 0.1)
    straight = init_model('mlp-mnist1d', 0)
    h1 = train(straight, small, batch=0.1, epochs=3, seed=1, quiet=True, **kw)
    part = init_model('mlp-mnist1d', 0)
    train(part, small, batch=0.1, epochs=2, seed=1, quiet=True, checkpoint_dir=tmp_path, **train_kwargs(name, small, 0.1))
    resumed = init_model('mlp-mnist1d', 0)
    h2 = train(resumed, small, batch=0.1, epochs=3, seed=1, quiet=True, checkpoint_dir=tmp_path, resume=True,
               **train_kwargs(name, small, 0.1))
    assert h2['train_loss'] == h1['train_loss']
    for a, b in zip(straight.parameters(), resumed.parameters()): assert torch.equal(a, b)
