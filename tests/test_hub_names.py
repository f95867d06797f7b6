"""Models named as online users name them (open_clip tags / hf-hub repos, diffusers hub ids), served offline from a
Hugging Face cache the test builds itself; a cache miss offline is one line naming the model (no network here)."""
import json
import subprocess

import pytest
import torch
import yaml

from .conftest import ROOT, TINY_CLIP
from .helpers.warm_python import run_python
from .test_distillation import tiny_options

COMMIT = '0' * 40


def snapshot(cache, repo: str):
    """The folder that plays the hub's snapshot of ``repo`` in the cache layout huggingface_hub reads offline."""
    folder = cache / f'models--{repo.replace("/", "--")}'
    (folder / 'refs').mkdir(parents=True, exist_ok=True)
    (folder / 'refs' / 'main').write_text(COMMIT)
    path = folder / 'snapshots' / COMMIT
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_tiny_clip(cache) -> None:
    """``TINY_CLIP`` with random weights as the hub repository srdistill-test/tiny-clip in ``cache``."""
    from open_clip.model import CLIP

    clip = snapshot(cache, 'srdistill-test/tiny-clip')
    (clip / 'open_clip_config.json').write_text(json.dumps({'model_cfg': TINY_CLIP, 'preprocess_cfg': {}}))
    torch.manual_seed(0)
    torch.save(CLIP(**TINY_CLIP).state_dict(), clip / 'open_clip_pytorch_model.bin')


@pytest.fixture(scope='module')
def hub_cache(tmp_path_factory):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    cache = tmp_path_factory.mktemp('hf_cache')
    cache_tiny_clip(cache)
    AutoencoderKL(block_out_channels=(8, 8), down_block_types=('DownEncoderBlock2D', ) * 2,
                  up_block_types=('UpDecoderBlock2D', ) * 2, latent_channels=4, norm_num_groups=4,
                  sample_size=32).save_pretrained(snapshot(cache, 'srdistill-test/tiny-vae'))
    UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                         norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
                         down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D'),
                         up_block_types=('CrossAttnUpBlock2D', 'UpBlock2D'),
                         ).save_pretrained(snapshot(cache, 'srdistill-test/tiny-sd') / 'unet')
    return cache


def offline(cache) -> dict[str, str]:
    """The environment of an offline user whose Hugging Face cache is ``cache`` (set before huggingface_hub is
    imported: the warm processes have not imported it)."""
    return {'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': str(cache)}


def distill(args: list[str], cwd, cache) -> subprocess.CompletedProcess:
    return run_python(['-m', 'srdistill_plugin.commands.distill', *args], cwd, env=offline(cache))


def test_clip_from_a_hub_repo_in_the_cache(hub_cache, photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt['categorize'].update(features='clip', clip={'model': 'hf-hub:srdistill-test/tiny-clip'})
    (tmp_path / 'distill.yml').write_text(yaml.safe_dump(opt))
    proc = distill(['-opt', 'distill.yml', '--stages', 'select', 'categorize'], tmp_path, hub_cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((tmp_path / 'experiments/pytest_distill/stages/categorize.json').read_text())
    assert manifest['feature_mode'] == 'clip'
    assert 'hf-hub:srdistill-test/tiny-clip' in manifest['feature_description']


@pytest.mark.parametrize('clip', [{'model': 'ViT-B-32', 'pretrained': 'laion2b_s34b_b79k'},
                                  {'model': 'hf-hub:srdistill-test/not-cached'}])
def test_an_uncached_clip_name_offline_is_one_line(hub_cache, photo_dir, tmp_path, clip):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt['categorize'].update(features='clip', clip=clip)
    (tmp_path / 'distill.yml').write_text(yaml.safe_dump(opt))
    proc = distill(['-opt', 'distill.yml'], tmp_path, hub_cache)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]  # log lines of the stages before go to stderr too
    assert line.startswith('error: option categorize.clip: ') and 'HF_HUB_OFFLINE=1' in line
    assert clip.get('pretrained', clip['model']) in line and 'local checkpoint file' in line
    assert not (tmp_path / 'experiments/pytest_distill/stages/categorize.json').exists()


def test_latent_backend_from_hub_ids_in_the_cache(hub_cache):
    proc = run_python(['-c', 'import srdistill_plugin\n'
                       'from srdistill_plugin.archs.latent_diffusion_arch import LatentClassConditionalDenoiser as L\n'
                       "net = L(vae_dir='srdistill-test/tiny-vae', denoiser_dir='srdistill-test/tiny-sd/unet', "
                       "num_classes=3)\n"
                       'print(type(net.denoiser).__name__, net.latent_shape(32))'], ROOT, env=offline(hub_cache))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == 'UNet2DConditionModel'


def test_an_uncached_diffusers_id_offline_stops_the_distillation_at_start(hub_cache, photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt['finetune']['network_g'] = {'type': 'LatentClassConditionalDenoiser', 'vae_dir': 'srdistill-test/tiny-vae',
                                    'denoiser_dir': 'stabilityai/not-cached/unet'}
    (tmp_path / 'distill.yml').write_text(yaml.safe_dump(opt))
    proc = distill(['-opt', 'distill.yml'], tmp_path, hub_cache)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith('error: option finetune.network_g.denoiser_dir: stabilityai/not-cached/unet is ')
    assert 'HF_HUB_OFFLINE=1' in line and not (tmp_path / 'experiments/pytest_distill/stages').exists()
