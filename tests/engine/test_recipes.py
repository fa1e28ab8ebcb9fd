"""Recipes: the paper's values, linear lr scaling, overrides, and layer-wise lr decay on every family."""
import pytest
import timm
from timm.optim import create_optimizer_v2

from uniconvnet.cli.main import main as cli_main
from uniconvnet.engine import TrainConfig, effective_batch_and_lr, make_train_config, recipe_values


def test_in1k_values():
    v = recipe_values('in1k', 'uniconvnet_t')
    assert (v['opt'], v['base_lr'], v['base_batch'], v['weight_decay']) == ('adamw', 4e-3, 4096, 0.05)
    assert (v['epochs'], v['warmup_epochs'], v['sched'], v['min_lr']) == (300, 20, 'cosine', 1e-6)
    assert v['auto_augment'] == 'rand-m9-mstd0.5-inc1'
    assert (v['mixup'], v['cutmix'], v['reprob'], v['smoothing'], v['ema_decay']) == (0.8, 1.0, 0.25, 0.1, 0.9999)
    drop_path = {'a': 0.05, 'p0': 0.05, 'p1': 0.05, 'p2': 0.08, 'n0': 0.08, 'n1': 0.1, 'n2': 0.1, 'n3': 0.1,
                 't': 0.2, 's': 0.4, 'b': 0.6}
    for short, rate in drop_path.items():
        values = recipe_values('in1k', f'uniconvnet_{short}')
        assert values['drop_path'] == rate, short
        no_mixup = short in ('p0', 'p1', 'p2')
        assert (values['mixup'], values['cutmix'], values['reprob']) == ((0.0, 0.0, 0.0) if no_mixup
                                                                         else (0.8, 1.0, 0.25)), short


def test_ft384_and_in22k_values():
    v = recipe_values('ft384', 'uniconvnet_b')
    assert (v['epochs'], v['base_lr'], v['warmup_epochs'], v['weight_decay']) == (30, 5e-5, 0, 1e-8)
    assert (v['layer_decay'], v['head_init_scale'], v['mixup'], v['cutmix']) == (0.7, 0.001, 0.0, 0.0)
    assert (v['image_size'], v['crop_pct']) == (384, 1.0)
    for short, rate, decay in (('t', 0.4, 0.7), ('s', 0.6, 0.7), ('b', 0.8, 0.7), ('l', 0.3, 0.8),
                               ('xl', 0.35, 0.8)):
        values = recipe_values('ft384', f'uniconvnet_{short}')
        assert (values['drop_path'], values['layer_decay']) == (rate, decay), short
    v = recipe_values('in22k', 'uniconvnet_l')
    assert (v['epochs'], v['warmup_epochs'], v['drop_path'], v['num_classes']) == (90, 5, 0.2, 21841)
    assert v['base_lr'] == 4e-3 and v['mixup'] == 0.8  # the rest is in1k's


def test_overrides_and_scaling():
    cfg = make_train_config('in1k', model='uniconvnet_s', epochs=5, drop_path=0.1, batch_size=64, accum_steps=2)
    assert (cfg.recipe, cfg.epochs, cfg.drop_path, cfg.weight_decay) == ('in1k', 5, 0.1, 0.05)
    batch, lr, note = effective_batch_and_lr(cfg, world_size=8)
    assert batch == 64 * 2 * 8 and lr == pytest.approx(4e-3 * 1024 / 4096)
    assert 'effective batch 1024' in note and 'scaled linearly' in note
    cfg = make_train_config('in1k', lr=1e-3)
    assert effective_batch_and_lr(cfg, 4)[1] == 1e-3  # an absolute lr is used as given
    assert make_train_config().recipe == 'digits' and make_train_config(data='x').recipe == 'in1k'
    with pytest.raises(ValueError, match='unknown recipe .*in1k, ft384, in22k'):
        make_train_config('imagenet')
    with pytest.raises(ValueError, match='unknown training setting'):
        make_train_config(epoch=3)
    assert set(TrainConfig.defaults()) == set(TrainConfig.field_names())  # every setting has a default


def test_every_setting_has_a_flag(capsys):
    with pytest.raises(SystemExit):
        cli_main(['train', '--help'])
    text = capsys.readouterr().out
    for name in TrainConfig.field_names():
        assert '--' + name.replace('_', '-') in text, name


@pytest.mark.parametrize('name, decay', [('uniconvnet_a', 0.7), ('uniconvnet_n0', 0.7), ('uniconvnet_l', 0.8)])
def test_layer_decay_groups(name, decay):
    # the official script stops on an assert here; timm's factory uses our group_matcher
    model = timm.create_model(name, device='meta')
    opt = create_optimizer_v2(model, 'adamw', lr=1.0, weight_decay=0.05, layer_decay=decay)
    scale_of = {}
    for group in opt.param_groups:
        for p in group['params']:
            scale_of[id(p)] = group['lr_scale']
    named = dict(model.named_parameters())
    layers = sum(len(s.blocks) for s in model.stages) + 1  # blocks, then the head
    assert scale_of[id(named['head.fc.weight'])] == 1.0
    assert scale_of[id(named['stem.0.weight'])] == pytest.approx(decay ** layers)
    last_block = f'stages.3.blocks.{len(model.stages[3].blocks) - 1}.mlp.fc1.weight'
    first_block = 'stages.0.blocks.0.mlp.fc1.weight'
    assert scale_of[id(named['stem.0.weight'])] < scale_of[id(named[first_block])] < \
        scale_of[id(named[last_block])] < 1.0
