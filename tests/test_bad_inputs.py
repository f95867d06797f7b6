"""Bad inputs across the commands: one line naming the option or file, exit 2, nothing left behind."""
import numpy as np
import pytest
import yaml

from .conftest import ROOT, SET5, run_tool


@pytest.fixture(scope='module')
def lr_photo(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp('lr')
    cv2.imwrite(str(folder / 'photo.png'), cv2.imread(str(SET5 / 'LR_bicubic' / 'X4' / 'img_002x4.png')))
    (folder / 'empty.mat').write_bytes(b'')
    (folder / 'short.mat').write_bytes(np.random.default_rng(0).bytes(21))
    (folder / 'text.pth').write_text('x\n')
    return folder


@pytest.mark.parametrize('args, message', [
    (['--threads', '-3'], 'option --threads: expected an integer >= 1, got -3'),
    (['--kernel', 'estimate-kernelgan', '--estimate-iters', '-5'], 'option --estimate-iters: expected an integer >= 1, got -5'),
    (['--kernel', '{folder}/empty.mat'], '{folder}/empty.mat: cannot read a kernel'),
    (['--kernel', '{folder}/short.mat'], '{folder}/short.mat: cannot read a kernel'),
    (['--gt', str(SET5 / 'HR'), '--filename-tmpl', '{{'], "option filename_tmpl: '{{' is not a template"),
    (['--model', '{folder}/text.pth'], '{folder}/text.pth: not a loadable MZSRNet checkpoint (not a checkpoint torch '
                                       'can read: Unsupported operand 120)'),  # and no advice to turn weights-only off
    (['--model', 'directx4', '--scale', '2'], 'option --scale: the shipped directx4 model is for 4, got 2'),
])
def test_zeroshot_bad_inputs(lr_photo, tmp_path, args, message):
    out = tmp_path / 'out'
    args = [a.format(folder=lr_photo) for a in args]
    proc = run_tool('-m', 'srdistill.zero_shot.cli', str(lr_photo / 'photo.png'), '--output', str(out), *args,
                    check=False)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and line.startswith('error: ' + message.format(folder=lr_photo)), line
    assert not out.exists()  # the folder this run made is gone again


@pytest.mark.parametrize('args, message', [
    (['--crop-size', '-64', '--step', '32'], 'option crop_size: expected an integer >= 0, got -64'),
    (['--output-is-a-file'], 'exists and is not a folder (--output names the folder of the LMDBs)'),
])
def test_prepare_bad_inputs(tmp_path, args, message):
    output = tmp_path / 'out'
    if args == ['--output-is-a-file']:
        output.write_text('not a folder')
        args = []
    proc = run_tool('tools/prepare_data.py', '--skimage', '--output', str(output), *args, check=False)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == (['out'] if output.is_file() else [])


@pytest.mark.parametrize('total_iter', [0, -5])
def test_a_training_of_no_iterations_is_refused(tmp_path, total_iter):
    opt = yaml.safe_load((ROOT / 'options' / 'mzsr_pretrain_x2_cpu.yml').read_text())
    opt['train']['total_iter'] = total_iter
    opt['path']['experiments_root'] = str(tmp_path / 'exp')
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    proc = run_tool('tools/train.py', '-opt', str(tmp_path / 'train.yml'), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f'error: option train.total_iter: expected an integer >= 1, '
                                                           f'got {total_iter}')
    assert not (tmp_path / 'exp').exists()


@pytest.mark.parametrize('args, message', [
    (['--iters', '-1'], 'error: option --iters: expected an integer >= 1, got -1'),
    (['--root', '/no/such/clone'], 'error: option --root: /no/such/clone has no options/ folder (expected a clone of '
                                   'the project)'),
])
def test_smoke_bad_inputs(args, message):
    proc = run_tool('tools/smoke.py', *args, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == message


def test_the_zero_shot_dataset_reads_kernels_and_never_estimates_them(tmp_path):
    from basicsr.data import build_dataset

    import srdistill_plugin  # noqa: F401  (registers the plugin's datasets)
    from srdistill.core.errors import SRDistillError

    with pytest.raises(SRDistillError, match='option datasets.photos.kernel: give kernel_dir or kernel_file; to '
                                             'estimate the kernels first run python tools/estimate_kernel.py'):
        build_dataset({'name': 'photos', 'type': 'ZeroShotLRDataset', 'dataroot_lq': str(SET5 / 'HR'), 'scale': 2,
                       'kernel': 'estimate', 'kernel_dir': str(tmp_path / 'kernels'), 'phase': 'val'})
    assert not (tmp_path / 'kernels').exists()


def test_the_commands_estimation_default_is_the_estimators():
    from srdistill.core.kernel_estimation import KernelGANConfig
    from srdistill.zero_shot.inference import KERNELGAN_ITERS

    assert KERNELGAN_ITERS == KernelGANConfig.max_iters


def parsed_options(path: str) -> dict:
    """An options file as BasicSR's parser leaves it (the keys it sets added)."""
    opt = yaml.safe_load((ROOT / path).read_text())
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, root_path=str(ROOT))
    for phase, dataset in opt['datasets'].items():
        dataset.update(phase=phase.split('_')[0], scale=opt['scale'])
    return opt


def setter(path: str, value):
    """A change to the options: set the dotted ``path`` (a leading ``-`` renames the last key to ``value``)."""
    def change(opt: dict) -> None:
        *parents, last = path.lstrip('-').split('.')
        node = opt
        for key in parents:
            node = node[key]
        if path.startswith('-'):
            node[value] = node.pop(last)
        else:
            node[last] = value
    return change


@pytest.mark.parametrize('change, message', [
    (setter('train.totl_iter', 5), "option train.totl_iter: unknown (did you mean 'total_iter'?)"),
    (setter('-datasets', 'datsets'), "option datsets: unknown (did you mean 'datasets'?)"),
    (setter('-val', 'valid'), "option valid: unknown (did you mean 'val'?)"),
    (setter('datasets.train.dataroot_gtt', 'x'), "option datasets.train.dataroot_gtt: unknown (did you mean "
                                                 "'dataroot_gt'?)"),
    (setter('datasets.train.batch_size_per_gpu', 'two'),
     "option datasets.train.batch_size_per_gpu: expected an integer >= 1, got 'two'"),
    (setter('datasets.train.gt_size', 'big'), "option datasets.train.gt_size: expected an integer >= 1, got 'big'"),
    (setter('datasets.train.num_worker_per_gpu', -1),
     'option datasets.train.num_worker_per_gpu: expected an integer >= 0, got -1'),
    (setter('datasets.train.support', 'hr'), "option datasets.train.support: expected one of ['lr_hr', 'son_lr'], "
                                             "got 'hr'"),
    (setter('scale', 'four'), "option scale: expected an integer >= 1, got 'four'"),
    (setter('model_type', 'MZSRModle'), "option model_type: 'MZSRModle' is not a registered model (did you mean "
                                        "'MZSRModel'?)"),
    (setter('network_g.type', 'MZSRNett'), "option network_g.type: 'MZSRNett' is not a registered arch (did you "
                                           "mean 'MZSRNet'?)"),
    (setter('network_g.num_fet', 32), "option network_g.num_fet: unknown (did you mean 'num_feat'?)"),
    (setter('train.optim_g.type', 'Adamm'), "option train.optim_g.type: expected one of ['Adam', 'AdamW', 'Adamax', "
                                            "'SGD', 'ASGD', 'RMSprop', 'Rprop'] (BasicSR's optimizers), got 'Adamm'"),
    (setter('train.optim_g.beta', [0.9, 0.99]), "option train.optim_g.beta: unknown (did you mean 'betas'?)"),
    (setter('train.scheduler.milestone', [5]), "option train.scheduler.milestone: unknown (did you mean "
                                               "'milestones'?)"),
    (setter('train.pixel_opt.type', 'L1Los'), "option train.pixel_opt.type: 'L1Los' is not a registered loss (did "
                                              "you mean 'L1Loss'?)"),
    (setter('train.meta.inner_steps', 0), 'option train.meta.inner_steps: expected an integer >= 1, got 0'),
    (setter('train.meta.loss_weight', 'uniform'), "option train.meta.loss_weight: unknown (did you mean "
                                                  "'loss_weights'?)"),
    (setter('val.metrics.psnr.type', 'calculate_psnrr'), "option val.metrics.psnr.type: 'calculate_psnrr' is not a "
                                                         "registered metric (did you mean 'calculate_psnr'?)"),
    (setter('datasets.val.kernel', 'gd9'), "option datasets.val.kernel: expected one of [None, 'gd0.2', 'gd2.0', "
                                           "'gdani', 'gb1.3'], got 'gd9'"),
    (setter('val.adaptation.stepz', 3), "option val.adaptation.stepz: unknown (did you mean 'steps'?)"),
    (setter('val.val_freq', 0), 'option val.val_freq: expected a number > 0, got 0'),
    (setter('logger.print_freq', -1), 'option logger.print_freq: expected an integer >= 1, got -1'),
    (setter('path.param_key_g', 'parms'), "option path.param_key_g: 'parms' is not a key BasicSR writes (did you "
                                          "mean 'params'?)"),
])
def test_the_basicsr_schema_names_the_bad_option(change, message):
    import srdistill_plugin  # noqa: F401  (registers the plugin's types)
    from srdistill.core.errors import SRDistillError
    from srdistill_plugin.engine.option_schema import check_basicsr_options

    opt = parsed_options('options/mzsr_meta_x2_cpu.yml')
    check_basicsr_options(opt)
    change(opt)
    with pytest.raises(SRDistillError) as info:
        check_basicsr_options(opt)
    assert str(info.value) == message


def test_the_shipped_basicsr_options_fit_the_schema():
    from srdistill_plugin.engine.option_schema import check_basicsr_options

    files = sorted(p for p in (ROOT / 'options').rglob('*.yml') if 'model_type' in p.read_text())
    assert len(files) >= 20
    for path in files:
        check_basicsr_options(parsed_options(str(path.relative_to(ROOT))))


def test_a_users_own_types_may_read_keys_the_plugin_does_not_know():
    import torch
    from basicsr.models.sr_model import SRModel
    from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY

    from srdistill.core.errors import SRDistillError
    from srdistill_plugin.engine.option_schema import check_basicsr_options

    class UsersOwnModel(SRModel):
        pass

    class UsersOwnDataset(torch.utils.data.Dataset):
        pass

    for registry, cls in ((MODEL_REGISTRY, UsersOwnModel), (DATASET_REGISTRY, UsersOwnDataset)):
        if cls.__name__ not in registry:
            registry.register(cls)
    opt = parsed_options('options/mzsr_pretrain_x2_cpu.yml')
    opt.update(model_type='UsersOwnModel', tile={'size': 64})
    opt['train']['my_warmup'] = 3
    opt['datasets']['train'].update(type='UsersOwnDataset', my_crop='random')
    check_basicsr_options(opt)
    opt['train']['total_iter'] = 'many'  # the keys BasicSR documents are still checked
    with pytest.raises(SRDistillError, match="option train.total_iter: expected an integer >= 1, got 'many'"):
        check_basicsr_options(opt)


def test_an_options_file_that_is_not_text_is_one_line(tmp_path):
    (tmp_path / 'photo.yml').write_bytes(b'\x89PNG\r\n')
    proc = run_tool('tools/test.py', '-opt', str(tmp_path / 'photo.yml'), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f'error: {tmp_path / "photo.yml"}: not a YAML text file (byte 0 is not UTF-8)']


@pytest.mark.parametrize('tool, options, change, message', [
    ('tools/train.py', 'options/mzsr_pretrain_x2_cpu.yml', setter('-datasets', 'datsets'),
     "error: option datsets: unknown (did you mean 'datasets'?)"),
    ('tools/test.py', 'options/test/mzsr_x2_gd2.0.yml', setter('val.metrics.psnr.crop_bordr', 2),
     "error: option val.metrics.psnr.crop_bordr: unknown (did you mean 'crop_border'?)"),
])
def test_train_and_test_commands_stop_on_a_bad_option_before_any_work(tmp_path, tool, options, change, message):
    opt = yaml.safe_load((ROOT / options).read_text())
    change(opt)
    (tmp_path / 'bad.yml').write_text(yaml.safe_dump(opt))
    proc = run_tool(str(ROOT / tool), '-opt', str(tmp_path / 'bad.yml'), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [message], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.yml']


def test_the_schema_knows_every_key_the_plugins_datasets_read():
    """Drift check: a key a plugin dataset reads (``opt['k']``, ``opt.get('k')``, ``_choice(opt, 'k'``) that the schema
    does not list would be refused as unknown in every options file that sets it."""
    import inspect
    import re

    from basicsr.utils.registry import DATASET_REGISTRY

    import srdistill_plugin  # noqa: F401  (registers the plugin's types)
    from srdistill_plugin.engine.option_schema import DATASET_KEYS, LOADER

    pattern = re.compile(r"opt(?:\.get\(|\[)'(\w+)'|_choice\(opt, '(\w+)'|probability\(opt\.get\('(\w+)'")
    modules: dict = {}  # a module's helpers serve all its datasets: compare per module
    for name, cls in DATASET_REGISTRY:
        if cls.__module__.startswith('srdistill_plugin'):
            modules.setdefault(inspect.getmodule(cls), []).append(name)
    assert sum(map(len, modules.values())) == 6
    for module, names in modules.items():
        read = {next(g for g in m if g) for m in pattern.findall(inspect.getsource(module))}
        known = set(LOADER).union(*(DATASET_KEYS[n] for n in names))
        assert read - {'type', 'db_paths', 'client_keys'} <= known, (names, sorted(read - known))
