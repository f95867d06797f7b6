"""The distillation stages on tiny real data: selection, grouping (CLIP by local path or the named descriptor),
fine-tuning through BasicSR (resumable), synthesis into a BasicSR LMDB, determinism and clear errors."""
import gc
import json
import re
from pathlib import Path
import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.data import build_dataset

from srdistill.core.errors import SRDistillError
from srdistill.core.features import ClipImageEncoder, cluster
from srdistill.core.imageio import read_image
from srdistill.core.lmdb_io import read_meta_keys
from srdistill.core.options_file import read_options
from srdistill.core.patch_selection import SelectionOptions, score_patches, select_patches
from srdistill_plugin.distill.runner import DistillRun
from srdistill_plugin.samplers import build_sampler

from .conftest import ROOT

pytestmark = pytest.mark.slow


def tiny_options(pool, output, **synthesize):
    return {
        'name': 'pytest_distill', 'scale': 4, 'num_gpu': 0, 'manual_seed': 0, 'pool': str(pool), 'output': str(output),
        'select': {'patch_size': 32, 'stride': 16, 'keep_fraction': 0.25},
        'categorize': {'num_classes': 3},
        'finetune': {
            'network_g': {'block_out_channels': [8, 16], 'layers_per_block': 1, 'attention_levels': [1],
                          'norm_num_groups': 4},
            'dataset': {'batch_size_per_gpu': 4},
            'train': {'ema_decay': 0.9, 'optim_g': {'type': 'AdamW', 'lr': 1e-3},
                      'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5}, 'total_iter': 4,
                      'diffusion': {'max_timestep': 400, 'lambda_rep': 0.01, 'lambda_div': 0.01, 'lambda_sr': 0.1}},
            'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}},
        'synthesize': {'mode': 'sdedit', 'strength': 0.3, 'steps': 3, 'per_class': 2, **synthesize},
    }


def test_bicubic_and_gradient_scores_rank_texture_above_flat(photo_dir):
    img = read_image(photo_dir / 'astronaut.png')
    img[:64, :64] = 0.5  # a flat corner
    for score in ('bicubic_psnr', 'gradient'):
        opts = SelectionOptions(patch_size=32, stride=32, score=score, scale=4)
        scores, ys, xs = score_patches(img, opts)
        assert len(scores) == 16
        flat = scores[(ys == 0) & (xs == 0)][0]
        assert (flat > scores.max() - 1e-6) if score == 'bicubic_psnr' else (flat < 1e-6)


def test_selection_caps_per_image_total_and_fraction():
    per_image = [(np.arange(10.), np.zeros(10, int), np.arange(10)), (np.arange(10.) + 5, np.zeros(10, int), np.arange(10))]
    kept = select_patches(per_image, SelectionOptions(per_image=3, keep_fraction=1, scale=4))
    assert [(k[0], k[3]) for k in kept] == [(0, 0.), (0, 1.), (0, 2.), (1, 5.), (1, 6.), (1, 7.)]
    assert len(select_patches(per_image, SelectionOptions(keep_fraction=0.25, scale=4))) == 5
    assert len(select_patches(per_image, SelectionOptions(keep_fraction=1, total=4, threshold=8, scale=4))) == 4


def test_clip_features_load_from_a_local_checkpoint_and_bad_paths_are_named(tiny_clip, photo_dir, tmp_path):
    config, checkpoint = tiny_clip
    encoder = ClipImageEncoder('srd-tiny-clip', checkpoint, model_config=str(config))
    feature = encoder(read_image(photo_dir / 'coffee.png'))
    assert feature.shape == (16, ) and np.linalg.norm(feature) == pytest.approx(1, abs=1e-5)
    assert str(checkpoint) in encoder.description and encoder.description.startswith('CLIP')
    with pytest.raises(SRDistillError, match='nope.pt does not exist'):
        ClipImageEncoder('srd-tiny-clip', tmp_path / 'nope.pt')
    (tmp_path / 'garbage.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(SRDistillError, match='garbage.pt is not a srd-tiny-clip checkpoint'):
        ClipImageEncoder('srd-tiny-clip', tmp_path / 'garbage.pt')


def test_clip_mode_is_recorded_in_the_manifest(tiny_clip, photo_dir, tmp_path):
    config, checkpoint = tiny_clip
    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt['categorize'].update(clip={'model': 'srd-tiny-clip', 'pretrained': str(checkpoint), 'model_config': str(config)})
    run = DistillRun(opt, root=tmp_path)
    run.run(('select', 'categorize'))
    manifest = json.loads(run.manifest('categorize').read_text())
    assert manifest['feature_mode'] == 'clip' and str(checkpoint) in manifest['feature_description']


def test_k_larger_than_images_and_empty_pool_are_clear(photo_dir, tmp_path):
    with pytest.raises(SRDistillError, match='num_classes: 9 is larger than the number of images'):
        cluster(np.random.rand(4, 8), 9)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SRDistillError, match='no images'):
        DistillRun(tiny_options(empty, tmp_path / 'o'), root=tmp_path).run(('select', ))
    (empty / 'bad.png').write_bytes(b'junk')
    with pytest.raises(SRDistillError, match='bad.png: cannot decode image'):
        DistillRun(tiny_options(empty, tmp_path / 'o'), root=tmp_path).run(('select', ))
    missing = tiny_options(tmp_path / 'demo' / 'HR_images', tmp_path / 'o')
    with pytest.raises(SRDistillError, match=r'option pool: .*demo/HR_images: image folder does not exist \(made by: '
                                             r'srdistill-prepare --skimage --output DIR writes'):
        DistillRun(missing, root=tmp_path / 'fresh')
    with pytest.raises(SRDistillError, match=r'HR_images: image folder does not exist \(made by: python tools/prep'):
        DistillRun(missing | {'pool_made_by': 'python tools/prepare_data.py --skimage --output datasets/demo'},
                   root=tmp_path / 'fresh')
    assert not (tmp_path / 'fresh').exists()  # refused before any folder is made


def test_budget_larger_than_the_pool_is_refused(photo_dir, tmp_path):
    run = DistillRun(tiny_options(photo_dir, tmp_path / 'out', mode='selected_real', per_class=10 ** 4), root=tmp_path)
    with pytest.raises(SRDistillError, match='larger than the pool'):
        run.run()


def lmdb_images(lmdb):
    dataset = build_dataset({'name': 'd', 'type': 'HROnlyDataset', 'dataroot_gt': str(lmdb),
                             'io_backend': {'type': 'lmdb'}, 'phase': 'val', 'scale': 4})
    images = torch.stack([dataset[i]['gt'] for i in range(len(dataset))])
    del dataset
    gc.collect()  # closes the LMDB environment: py-lmdb refuses to open a path twice in one process
    return images


def test_full_pipeline_resumes_writes_lmdb_and_is_deterministic(photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    run = DistillRun(opt, root=tmp_path)
    run.run()
    # A run killed during fine-tuning has checkpoints but no finetune manifest: it resumes from the checkpoints.
    run.manifest('finetune').unlink()
    run.manifest('synthesize').unlink()
    opt['finetune']['train']['total_iter'] = 6
    DistillRun(opt, root=tmp_path).run()
    logs = ''.join(p.read_text() for p in (run.exp_dir / 'pytest_distill_finetune').glob('train_*.log'))
    assert 'Resuming training from epoch: 0, iter: 4.' in logs and 'param key: [params_ema]' in logs
    # A finished run asked for more fine-tuning iterations continues it and redoes the synthesis.
    opt['finetune']['train']['total_iter'] = 8
    DistillRun(opt, root=tmp_path).run()
    logs = ''.join(p.read_text() for p in (run.exp_dir / 'pytest_distill_finetune').glob('train_*.log'))
    assert 'Resuming training from epoch: 0, iter: 6.' in logs

    lmdb = tmp_path / 'out' / 'HR.lmdb'
    assert len(read_meta_keys(lmdb)) == 6 and (tmp_path / 'out' / 'preview.png').is_file()
    manifest = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert manifest['mode'] == 'sdedit' and manifest['feature_mode'] == 'colour_texture'
    assert manifest['seed_residual_std'] > 1  # SDEdit changed its seed patches
    assert 'NOT CLIP' in manifest['feature_description']
    dataset = build_dataset({'name': 'd', 'type': 'HROnlyDataset', 'dataroot_gt': str(lmdb),
                             'io_backend': {'type': 'lmdb'}, 'phase': 'train', 'scale': 4, 'gt_size': 32})
    assert sorted(set(dataset.class_ids)) == [0, 1, 2] and dataset[0]['gt'].shape == (3, 32, 32)
    assert len(build_sampler({'type': 'ClassBalancedSampler'}, dataset, 1, 0, 2)) == 12
    del dataset

    first = lmdb_images(lmdb)
    run.manifest('synthesize').unlink()
    DistillRun(opt, root=tmp_path).run(('synthesize', ))
    assert torch.equal(lmdb_images(lmdb), first)  # same seed and checkpoint -> the same images


def test_real_patch_baselines_need_no_generator(photo_dir, tmp_path):
    for mode in ('selected_real', 'random_real', 'selected_noise'):
        opt = tiny_options(photo_dir, tmp_path / mode, mode=mode, noise_sigma=8) | {'name': f'pytest_{mode}'}
        DistillRun(opt, root=tmp_path).run()
        assert len(read_meta_keys(tmp_path / mode / 'HR.lmdb')) == 6
        img = cv2.imread(str(tmp_path / mode / 'preview.png'))
        assert img is not None and img.shape[1] == 8 * 36
    # The noise ablation perturbs exactly the selected patches, by the noise asked for.
    manifests = {m: json.loads((tmp_path / m / 'manifest.json').read_text()) for m in ('selected_real', 'selected_noise')}
    assert manifests['selected_real']['classes'] == manifests['selected_noise']['classes']
    assert manifests['selected_real']['seed_residual_std'] == 0
    assert manifests['selected_noise']['seed_residual_std'] == pytest.approx(8, rel=0.15)
    diff = lmdb_images(tmp_path / 'selected_noise' / 'HR.lmdb') - lmdb_images(tmp_path / 'selected_real' / 'HR.lmdb')
    assert float(diff.std()) * 255 == pytest.approx(8, rel=0.15)
    opt = tiny_options(photo_dir, tmp_path / 'x', mode='selected_noise', noise_sigma='loud') | {'name': 'pytest_x'}
    with pytest.raises(SRDistillError, match="option synthesize.noise_sigma: expected a number >= 0.*'loud'"):
        DistillRun(opt, root=tmp_path).run()


def test_pretrained_local_unet_gets_class_embedding_and_lora(tmp_path):
    from diffusers import UNet2DModel

    from srdistill_plugin.archs.diffusion_unet_arch import ClassConditionalUNet
    torch.manual_seed(0)
    UNet2DModel(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1,
                down_block_types=('DownBlock2D', 'AttnDownBlock2D'),
                up_block_types=('AttnUpBlock2D', 'UpBlock2D')).save_pretrained(tmp_path / 'unet')
    net = ClassConditionalUNet(num_classes=3, pretrained_dir=str(tmp_path / 'unet'), lora_rank=2)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all('lora' in n or 'class_embedding' in n for n in trainable)
    out = net(torch.randn(2, 3, 16, 16), torch.tensor([3, 500]), torch.tensor([0, 2]))
    assert out.shape == (2, 3, 16, 16)
    with pytest.raises(SRDistillError, match='not a diffusers UNet2DModel folder'):
        ClassConditionalUNet(pretrained_dir=str(tmp_path))


def test_a_finished_stage_is_not_reused_with_other_options(photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    DistillRun(opt, root=tmp_path).run(('select', ))
    DistillRun(opt, root=tmp_path).run(('select', ))  # same options: skipped
    opt['select']['keep_fraction'] = 0.5
    with pytest.raises(SRDistillError, match='stage select was run with other options'):
        DistillRun(opt, root=tmp_path).run(('select', ))


def test_selected_patches_are_spread_over_source_images():
    from srdistill_plugin.distill.strategies import spread_over_images
    assert spread_over_images(np.array([10, 11, 12, 20, 13, 21]), [1, 1, 1, 2, 1, 2]) == [10, 20, 11, 21, 12, 13]


@pytest.fixture()
def tiny_latent_models(tmp_path):
    """A tiny AutoencoderKL (x2 latent grid), SD-style UNet and DiT saved locally: stand-ins with the real formats."""
    from diffusers import AutoencoderKL, Transformer2DModel, UNet2DConditionModel
    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 8), down_block_types=('DownEncoderBlock2D', ) * 2,
                  up_block_types=('UpDecoderBlock2D', ) * 2, latent_channels=4, norm_num_groups=4,
                  sample_size=32).save_pretrained(tmp_path / 'vae')
    UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                         norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
                         down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D'),
                         up_block_types=('CrossAttnUpBlock2D', 'UpBlock2D')).save_pretrained(tmp_path / 'sd_unet')
    Transformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=4, out_channels=8, num_layers=1,
                       sample_size=16, patch_size=2, norm_type='ada_norm_zero', num_embeds_ada_norm=10,
                       ).save_pretrained(tmp_path / 'dit')
    return tmp_path


def test_latent_backends_condition_on_pseudo_classes_and_train_only_adapters(tiny_latent_models):
    from srdistill_plugin.archs.latent_diffusion_arch import LatentClassConditionalDenoiser
    root = tiny_latent_models
    for denoiser in ('sd_unet', 'dit'):
        net = LatentClassConditionalDenoiser(str(root / 'vae'), str(root / denoiser), num_classes=3, lora_rank=2,
                                             sample_size=32)
        trainable = {n for n, p in net.named_parameters() if p.requires_grad}
        assert trainable and all('lora' in n or 'class_' in n for n in trainable), denoiser
        assert not any(n.startswith('vae.') for n in trainable)
        z = net.encode(torch.rand(2, 3, 32, 32) * 2 - 1)
        assert z.shape == (2, *net.latent_shape(32)) == (2, 4, 16, 16)
        eps = net(z, torch.tensor([10, 500]), torch.tensor([0, 2]))
        assert eps.shape == z.shape and not torch.equal(eps[0], net(z, torch.tensor([10, 500]), torch.tensor([1, 2]))[0])
        assert net.decode(z).shape == (2, 3, 32, 32)
    with pytest.raises(SRDistillError, match='holds AutoencoderKL; expected one of'):
        LatentClassConditionalDenoiser(str(root / 'vae'), str(root / 'vae'))
    with pytest.raises(SRDistillError, match='at least 20 classes'):
        LatentClassConditionalDenoiser(str(root / 'vae'), str(root / 'dit'), num_classes=20)


def test_latent_model_finetunes_and_synthesizes_through_the_pipeline(tiny_latent_models, photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt['finetune']['network_g'] = {'type': 'LatentClassConditionalDenoiser', 'vae_dir': str(tiny_latent_models / 'vae'),
                                    'denoiser_dir': str(tiny_latent_models / 'sd_unet'), 'lora_rank': 2}
    opt['finetune']['diffusion'] = {'beta_schedule': 'scaled_linear', 'beta_start': 0.00085, 'beta_end': 0.012}
    DistillRun(opt, root=tmp_path).run()
    manifest = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert manifest['num_images'] == 6 and manifest['seed_residual_std'] > 0
    assert lmdb_images(tmp_path / 'out' / 'HR.lmdb').shape == (6, 3, 32, 32)
    opt['finetune']['network_g']['vae_dir'] = str(tmp_path / 'no_vae')
    with pytest.raises(SRDistillError, match='option finetune.network_g.vae_dir: .*no_vae is neither a local diffusers folder'):
        DistillRun(opt, root=tmp_path)


@pytest.mark.parametrize('change, message', [
    (lambda o: o.update(selct=o.pop('select', {})), "option selct: unknown (did you mean 'select'?)"),
    (lambda o: o['select'].update(keep_fracton=0.2), "option select.keep_fracton: unknown (did you mean "
                                                      "'keep_fraction'?)"),
    (lambda o: o.setdefault('synthesize', {}).update(per_clas=2), "option synthesize.per_clas: unknown (did you mean "
                                                                  "'per_class'?)"),
    (lambda o: o.update(categorize=[7]), 'option categorize: expected a mapping of options, got [7]')])
def test_misspelled_sections_and_keys_stop_the_run_before_any_stage(photo_dir, tmp_path, change, message):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt.setdefault('select', {})
    change(opt)
    with pytest.raises(SRDistillError, match=re.escape(message)):
        DistillRun(opt, root=tmp_path / 'fresh')
    assert not (tmp_path / 'fresh').exists()


def test_every_shipped_distillation_file_and_block_uses_known_keys():
    from srdistill_plugin.distill.options import check_known_keys

    for path in [ROOT / 'options' / 'distill_x4.yml', *sorted((ROOT / 'options' / 'distill_baselines').glob('*.yml'))]:
        check_known_keys(yaml.safe_load(path.read_text()))
    for path in sorted((ROOT / 'options' / 'report').glob('**/*.yml')):
        exp = read_options(path)  # with its _base_ merged
        check_known_keys(exp.get('distill') or {}, top_level=False)


def official_srdd_kept(path, patch: int, step: int, threshold: float) -> list[tuple[int, int]]:
    """The official selection, written out from its description (sunwoocho/SRDD src/1_select_patches.py): PIL
    greyscale of each RGB patch, cv2 INTER_CUBIC down x4 and up, PSNR with peak 255, kept below the threshold."""
    from PIL import Image

    image = Image.open(path).convert('RGB')
    kept = []
    for y in range(0, image.height - patch + 1, step):
        for x in range(0, image.width - patch + 1, step):
            grey = np.array(image.crop((x, y, x + patch, y + patch)).convert('L')).astype(np.float32)
            down = cv2.resize(grey, (patch // 4, patch // 4), interpolation=cv2.INTER_CUBIC)
            up = cv2.resize(down, (patch, patch), interpolation=cv2.INTER_CUBIC)
            if 20 * np.log10(255. / np.sqrt(np.mean((grey - up) ** 2))) < threshold:
                kept.append((y, x))
    return kept


def test_srdd_threshold_selection_keeps_exactly_the_official_patches(photo_dir):
    path = photo_dir / 'astronaut.png'
    opts = SelectionOptions(patch_size=32, stride=16, score='srdd_bicubic_psnr', threshold=26., keep_fraction=1.)
    kept = select_patches([score_patches(read_image(path), opts)], opts)
    expected = official_srdd_kept(path, 32, 16, 26.)
    assert 0 < len(expected) < 49  # the threshold splits this photograph's 7 x 7 patches
    assert sorted((y, x) for _, y, x, _ in kept) == sorted(expected)


def test_a_threshold_no_patch_passes_names_the_patches_scored_and_the_best_score(photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt['select'].update(score='srdd_bicubic_psnr', threshold=5., keep_fraction=1.)
    with pytest.raises(SRDistillError, match=r'option select.threshold: no patch of .* passed the selection \(294 '
                                             r'patches scored by srdd_bicubic_psnr; the most informative scored '
                                             r'[\d.]+, threshold 5.0\)'):
        DistillRun(opt, root=tmp_path).run(('select', ))


@pytest.mark.parametrize('change, message', [
    (lambda o: o['synthesize'].update(guidance_scale=0.5),
     'option synthesize.guidance_scale: expected a number >= 1 (1: no guidance), got 0.5'),
    (lambda o: o['synthesize'].update(guidance_scale=4.0),
     'option synthesize.guidance_scale: 4.0 needs an unconditional class, and the pixel UNet has none'),
    (lambda o: o['synthesize'].update(sampler='euler'),
     "option synthesize.sampler: expected one of ('ddim', 'ddpm'), got 'euler'"),
    (lambda o: o['synthesize'].update(per_class=0), 'option synthesize.per_class: expected an integer >= 1, got 0'),
    (lambda o: o['synthesize'].update(per_class='two'), "option synthesize.per_class: expected an integer >= 1, got 'two'"),
    (lambda o: o['synthesize'].update(budget_percent=-1),
     "option synthesize.budget_percent: expected a number > 0 (a share of the pool's pixels), got -1"),
    (lambda o: o['finetune']['train'].update(totl_iter=5),
     "finetune (the BasicSR options of the fine-tuning): option train.totl_iter: unknown (did you mean "
     "'total_iter'?)"),
    (lambda o: o['finetune']['train']['optim_g'].update(lr='1e-4'),
     "finetune (the BasicSR options of the fine-tuning): option train.optim_g.lr: expected a number > 0, got '1e-4'"),
    (lambda o: o['categorize'].update(num_classes='seven'),
     "option categorize.num_classes: expected an integer >= 1, got 'seven'"),
    (lambda o: o['categorize'].update(features='dino'),
     "option categorize.features: expected one of ('auto', 'clip', 'colour_texture'), got 'dino'"),
    (lambda o: o.update(output=str(next(Path(o['pool']).iterdir()))), 'exists and is not a folder')])
def test_bad_guidance_sampler_and_budget_options_stop_before_any_stage(photo_dir, tmp_path, change, message):
    opt = tiny_options(photo_dir, tmp_path / 'out', mode='noise')
    change(opt)
    with pytest.raises(SRDistillError, match=re.escape(message)):
        DistillRun(opt, root=tmp_path / 'fresh')
    assert not (tmp_path / 'fresh').exists()


def test_guided_ddpm_sampling_after_training_with_label_dropout_gives_every_class(photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out', mode='noise', guidance_scale=4.0, sampler='ddpm')
    opt['finetune']['network_g']['null_class'] = True
    opt['finetune']['train']['class_dropout_prob'] = 0.5
    DistillRun(opt, root=tmp_path).run()
    keys = read_meta_keys(tmp_path / 'out' / 'HR.lmdb')
    assert len(keys) == 3 * 2  # 2 per class, 3 pseudo-classes
    classes = [int(line.split()[1]) for line in (tmp_path / 'out' / 'HR.lmdb' / 'class_info.txt').read_text().splitlines()]
    assert sorted(set(classes)) == [0, 1, 2]


def test_difffit_trains_exactly_the_official_groups_and_starts_as_the_pretrained_dit(tiny_latent_models):
    from srdistill_plugin.archs.latent_diffusion_arch import LatentClassConditionalDenoiser

    root = tiny_latent_models
    plain = LatentClassConditionalDenoiser(str(root / 'vae'), str(root / 'dit'), num_classes=3, sample_size=32)
    fit = LatentClassConditionalDenoiser(str(root / 'vae'), str(root / 'dit'), num_classes=3, sample_size=32,
                                         difffit=True)
    names = {n: m for n, m in fit.denoiser.named_modules()}
    trainable = {n for n, p in fit.denoiser.named_parameters() if p.requires_grad}
    expected = set()
    for name, _ in fit.denoiser.named_parameters():  # the groups DiffFit names, read off the module tree
        owner, leaf = name.rsplit('.', 1)
        if leaf in ('bias', 'gamma') or 'class_embedder' in name or \
                type(names[owner]).__name__ in ('LayerNorm', 'GroupNorm'):
            expected.add(name)
    assert trainable == expected
    assert sum(n.endswith('gamma') for n in trainable) == len(fit.denoiser.transformer_blocks) == 1
    assert any(n.endswith('attn1.to_q.weight') for n, _ in fit.denoiser.named_parameters())  # frozen weights stay
    assert not any(n.endswith('to_q.weight') for n in trainable)
    fit.denoiser.load_state_dict({k.replace('transformer_blocks.0.', 'transformer_blocks.0.block.'): v
                                  for k, v in plain.denoiser.state_dict().items()}, strict=False)
    z, t, c = torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), torch.tensor([0, 2])
    with torch.no_grad():
        assert torch.allclose(fit(z, t, c), plain(z, t, c), atol=1e-5)  # gamma = 1: the pretrained model
    with pytest.raises(SRDistillError, match='DiffFit fine-tunes a DiT'):
        LatentClassConditionalDenoiser(str(root / 'vae'), str(root / 'sd_unet'), difffit=True)


def test_ten_images_per_class_of_seven_pseudo_classes_is_the_papers_seventy(tmp_path):
    from srdistill.core.sample_images import load_skimage_photos

    pool = tmp_path / 'pool'
    pool.mkdir()
    for name, img in list(load_skimage_photos().items())[:8]:
        cv2.imwrite(str(pool / f'{name}.png'), img[:128, :128])
    opt = tiny_options(pool, tmp_path / 'out', mode='noise', per_class=10)
    opt['categorize']['num_classes'] = 7
    DistillRun(opt, root=tmp_path).run()
    classes = [int(line.split()[1]) for line in (tmp_path / 'out' / 'HR.lmdb' / 'class_info.txt').read_text().splitlines()]
    assert len(classes) == 70 and sorted(np.bincount(classes).tolist()) == [10] * 7


def test_clustering_per_patch_gives_every_kept_patch_its_own_class_and_trains_on_them(photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out', mode='noise')
    opt['categorize']['by'] = 'patch'
    run = DistillRun(opt, root=tmp_path)
    run.run(('select', 'categorize'))
    selection, categories = (json.loads((run.stage_dir / f'{s}.json').read_text()) for s in ('select', 'categorize'))
    assert categories['by'] == 'patch' and len(categories['patch_classes']) == len(selection['patches'])
    by_image = {}
    for (image, *_), c in zip(selection['patches'], categories['patch_classes']):
        by_image.setdefault(image, set()).add(c)
    assert any(len(c) > 1 for c in by_image.values())  # patches of one photograph in different classes
    from srdistill_plugin.data.selected_patch_dataset import SelectedPatchDataset
    assert SelectedPatchDataset({'stage_dir': str(run.stage_dir)}).class_ids == categories['patch_classes']
    run.run(('finetune', 'synthesize'))
    assert len(read_meta_keys(tmp_path / 'out' / 'HR.lmdb')) == 3 * 2


def test_per_patch_classes_refuse_the_modes_that_need_every_pool_image_classified(photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out', mode='random_proportional')
    opt['categorize']['by'] = 'patch'
    with pytest.raises(SRDistillError, match="option categorize.by: patch gives classes to the kept patches only"):
        DistillRun(opt, root=tmp_path / 'fresh')


def test_difffit_on_a_model_without_transformer_blocks_is_refused_at_start(tiny_latent_models, photo_dir, tmp_path):
    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt['finetune']['network_g'] = {'type': 'LatentClassConditionalDenoiser', 'vae_dir': str(tiny_latent_models / 'vae'),
                                    'denoiser_dir': str(tiny_latent_models / 'sd_unet'), 'difffit': True}
    with pytest.raises(SRDistillError, match='option finetune.network_g.difffit: DiffFit fine-tunes a DiT .*; the '
                                             'denoiser is UNet2DConditionModel'):
        DistillRun(opt, root=tmp_path / 'fresh')
    opt['finetune']['network_g'] = {'difffit': True}
    with pytest.raises(SRDistillError, match='the denoiser is the pixel UNet'):
        DistillRun(opt, root=tmp_path / 'fresh')
    assert not (tmp_path / 'fresh').exists()


def test_guidance_on_a_tiny_dit_uses_its_null_class_the_official_way(tiny_latent_models):
    from srdistill.core.synthesis import guided_noise
    from srdistill_plugin.archs.latent_diffusion_arch import LatentClassConditionalDenoiser

    net = LatentClassConditionalDenoiser(str(tiny_latent_models / 'vae'), str(tiny_latent_models / 'dit'),
                                         num_classes=3, sample_size=32).eval()
    assert net.null_class == 10  # DiT's dropped-label row, after its 10 classes
    z, t, c = torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), torch.tensor([0, 2])
    with torch.no_grad():
        eps_c, eps_null = net(z, t, c), net(z, t, torch.tensor([10, 10]))
        assert torch.allclose(guided_noise(net, z, t, c, 1.), eps_c)
        assert torch.allclose(guided_noise(net, z, t, c, 4.), eps_null + 4 * (eps_c - eps_null), atol=1e-5)
