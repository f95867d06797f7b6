"""BasicSR's test pipeline that also writes the averaged metrics (and a model's ``extra_results``, e.g. MZSR's
adaptation time) to ``results/<name>/metrics.json``."""
from __future__ import annotations

import copy
import json
import logging
from os import path as osp

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.archs import build_network
from basicsr.utils import get_env_info, get_root_logger, get_time_str, make_exp_dirs
from basicsr.utils.options import dict2str, parse_options

from srdistill.core.atomic_io import atomic_write_text
from srdistill_plugin.engine.checkpoint_io import build_model_from_files
from srdistill.core.errors import SRDistillError
from srdistill_plugin.engine.option_schema import check_basicsr_options


def check_test_weights(opt: dict) -> None:
    """A test scores trained weights: a network with parameters and no ``path.pretrain_network_g`` (or a misspelled
    key) would score its random initialisation (ZSSR, which trains a fresh network on each image, excepted), and a
    missing file names the command that makes it (``path.weights_made_by``)."""
    path = opt['path'].get('pretrain_network_g')
    made_by = opt['path'].get('weights_made_by')
    hint = f' (made by: {made_by})' if made_by else ''
    trains_per_image = ((opt.get('val') or {}).get('adaptation') or {}).get('mode') == 'zssr'
    if path is None and not trains_per_image:
        if any(p.numel() for p in build_network(copy.deepcopy(opt['network_g'])).parameters()):
            raise SRDistillError(f'option path.pretrain_network_g: not given; {opt["network_g"]["type"]} has '
                                 f'parameters, and a test of its random initialisation is refused{hint}')
    elif not osp.isfile(path):
        raise SRDistillError(f'option path.pretrain_network_g: {path} does not exist{hint}')


def test_pipeline(root_path: str) -> dict[str, dict[str, float]]:
    """Evaluate ``network_g`` on every dataset of the options; return ``{dataset: {metric: value}}``."""
    opt, _ = parse_options(root_path, is_train=False)
    check_basicsr_options(opt)
    check_test_weights(opt)
    torch.backends.cudnn.benchmark = True
    make_exp_dirs(opt)
    log_file = osp.join(opt['path']['log'], f"test_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))

    model = build_model_from_files(opt)
    results = {}
    for _, dataset_opt in sorted(opt['datasets'].items()):
        test_set = build_dataset(dataset_opt)
        loader = build_dataloader(test_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None,
                                  seed=opt['manual_seed'])
        logger.info(f"Testing {dataset_opt['name']} ({len(test_set)} images)...")
        model.validation(loader, current_iter=opt['name'], tb_logger=None, save_img=opt['val']['save_img'])
        metrics = {**getattr(model, 'metric_results', {}), **getattr(model, 'extra_results', {})}
        results[dataset_opt['name']] = {k: float(v) for k, v in metrics.items()}
    out = osp.join(opt['path']['results_root'], 'metrics.json')
    atomic_write_text(out, json.dumps({'name': opt['name'], 'network': opt['network_g']['type'], 'results': results},
                                      indent=2))
    logger.info(f'Metrics written to {out}')
    return results
