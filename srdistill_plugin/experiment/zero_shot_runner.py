"""The zero-shot experiment: start -> one meta-transfer run per arm -> the checkpoint each arm is evaluated at
(fixed, or chosen on held-out photographs) -> the papers' table (bicubic, the start, MZSR(n), ZSSR per set and
kernel, and ablations) -> report.

``srdistill-experiment -opt options/report/mzsr_*.yml``. Work goes to ``experiments/<name>/``, the report to
``results/<name>/report.{md,html}``. Everything resumes: the trainings through BasicSR's ``--auto_resume``, every
evaluated image from its row in ``experiments/<name>/rows/<set>_<kernel>.json``, keyed by the content hash of the
weights it read (new weights are evaluated anew, never mixed in). A results file of the earlier benchmark script
(``import:``) seeds those rows under the hashes it recorded, so its figures are reproduced without retraining.
Several workers share the work: the trainings under one lock, each set x kernel under its own.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from srdistill.core.atomic_io import atomic_path
from srdistill.core.errors import SRDistillError
from srdistill.core.file_lock import FileLock
from srdistill.core.imageio import list_images, read_image
from srdistill.core.json_store import JsonStore
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill_plugin.zero_shot.checkpoints import average_checkpoint, file_hash, saved_checkpoints, seed_branch
from srdistill_plugin.zero_shot.official_weights import official_mzsr_state_dict
from srdistill_plugin.zero_shot.protocol import benchmark_images, load_mzsr, mzsr_rows, official_lr
from srdistill_plugin.zero_shot.training import TrainingRun, meta_transfer_chain, read_training_record

from .runner import best_on_validation
from .zero_shot_blind import BlindTable
from .zero_shot_import import read_import, relative
from .zero_shot_options import ZeroShotExperiment
from .zero_shot_table import KernelTable
from .zero_shot_report import write_zero_shot_report

VAL_OFF = 'val=~'  # the trainings never validate on a test set (nor at their end); choices use held-out photos


class ZeroShotRunner:
    """The stages of one zero-shot experiment over its work folder."""

    def __init__(self, exp: ZeroShotExperiment, root: Path, num_gpu: int = 0):
        self.exp, self.root, self.num_gpu = exp, root, num_gpu
        self.work = root / 'experiments' / exp.name
        self.imported = read_import(exp, root) if exp.import_file else None
        self.networks = JsonStore(self.work / 'networks.json')  # name -> {hash, iteration, source, ...}
        self._nets: dict[str, torch.nn.Module] = {}

    # --- networks ----------------------------------------------------------------------------------------
    def run_name(self, name: str) -> str:
        return f'{self.exp.name}_{name}'

    def models(self, name: str) -> Path:
        if name in self.exp.arms and self.exp.arms[name].average:
            return self.work / 'averages' / name / 'models'
        return self.work / 'experiments' / self.run_name(name) / 'models'

    def network_names(self) -> list[str]:
        return ['pretrained', *self.exp.arms] if self.exp.start else list(self.exp.arms)

    def start_weights(self) -> Path:
        start = self.exp.start
        if 'weights' in start:
            return start['weights']
        return self.work / 'official_start.pth' if 'official' in start else self.models('pretrain') / 'net_g_latest.pth'

    def arm_iters(self, arm: str) -> int:
        spec = self.exp.arms[arm]
        if spec.average:
            return self.arm_iters(spec.average[0])
        return spec.total_iter or yaml.safe_load((self.root / spec.options).read_text())['train']['total_iter']

    def evaluated_iteration(self, arm: str) -> int | None:
        """The fixed or chosen checkpoint of ``arm`` (None: its last; an average: at its base's last)."""
        spec = self.exp.arms[arm]
        fixed = spec.checkpoint or (self.networks.get(arm) or {}).get('chosen')
        return fixed or (self.arm_iters(arm) if spec.average else None)

    def checkpoint_path(self, arm: str) -> Path:
        """The weights of ``arm`` that the table evaluates."""
        if self.exp.arms[arm].weights:
            return self.exp.arms[arm].weights
        iteration = self.evaluated_iteration(arm)
        return self.models(arm) / (f'net_g_{iteration}.pth' if iteration else 'net_g_latest.pth')

    def missing(self) -> list[str]:
        """The networks neither trained here nor imported."""
        have = set(self.imported['checkpoints']) if self.imported else set()
        out = [] if not self.exp.start or self.start_weights().is_file() or 'pretrained' in have else ['pretrained']
        return out + [arm for arm, spec in self.exp.arms.items() if arm not in have and not spec.average and not (
            spec.weights or self.models(arm) / 'net_g_latest.pth').is_file()]

    def check_inputs(self) -> None:
        """What the trainings read, before any work (one line naming it)."""
        missing = self.missing()
        if not missing:
            return
        for arm in missing:
            if arm != 'pretrained' and self.exp.arms[arm].weights:
                raise SRDistillError(f'option arms.{arm}.weights: {self.exp.arms[arm].weights}: no such file')
        if self.exp.pool is None or not self.exp.pool.is_dir():
            raise SRDistillError(f'option pool: {self.exp.pool}: no such folder of HR photographs (the trainings read '
                                 f'it; missing: {", ".join(missing)})')
        if self.imported:
            raise SRDistillError(f'option import: {self.exp.import_file.name} has no run of '
                                 f'{", ".join(missing)}; train them in an experiment without import')

    def train(self) -> None:
        """The start and every arm, trained where missing (one worker at a time; the others wait, then evaluate)."""
        if not self.missing():
            return
        with FileLock(self.work / 'locks' / 'training.lock'):
            lmdb = self.work / 'pool' / 'HR.lmdb'
            if not (lmdb / 'meta_info.txt').is_file():
                prepare_lmdbs(self.exp.pool, lmdb.parent, PrepareOptions(crop_size=192, step=192,
                                                                         scales=(self.exp.scale, )))
            start = self.exp.start
            if 'official' in start and not self.start_weights().is_file():
                with atomic_path(self.start_weights()) as partial:
                    torch.save({'params': official_mzsr_state_dict(str(start['official']))}, partial)
            pretrain = (TrainingRun(self.run_name('pretrain'), start['train']['options'],
                                    (*start['train']['overrides'], *_iters(start['train'].get('total_iter'))))
                        if 'train' in start else self.start_weights())
            runs = {arm: TrainingRun(self.run_name(arm), spec.options,
                                     (*spec.overrides, f'train:total_iter={self.arm_iters(arm)}', VAL_OFF))
                    for arm, spec in self.exp.arms.items() if spec.options}
            common = [f'datasets:train:dataroot_gt={lmdb}', 'logger:use_tb_logger=False', f'num_gpu={self.num_gpu}']
            meta_transfer_chain(self.root, self.work / 'experiments', common, pretrain,
                                {a: r for a, r in runs.items() if not self.exp.arms[a].branch}, self.exp.threads)
            branches = {a: r for a, r in runs.items() if self.exp.arms[a].branch}
            for arm in branches:  # each continues its arm from a training state
                of, at = self.exp.arms[arm].branch
                seed_branch(self.models(of).parent, self.models(arm).parent, at)
            if branches:
                meta_transfer_chain(self.root, self.work / 'experiments', common, self.start_weights(), branches,
                                    self.exp.threads)

    def make_averages(self) -> None:
        """Each average arm's weights at the iterations it is evaluated or chosen at (written once)."""
        for arm, spec in self.exp.arms.items():
            if not spec.average:
                continue
            (of, window), iterations = spec.average, [spec.checkpoint or self.arm_iters(arm)]
            if spec.choose:
                iterations = [t for t in saved_checkpoints(self.models(of))
                              if t % spec.choose.every == 0 and t >= window]
            for t in iterations:
                average_checkpoint(self.models(of), t, window, self.models(arm) / f'net_g_{t}.pth')

    def resolve_networks(self) -> None:
        """Record each network's evaluated weights: hash, iteration and where it came from."""
        imported = self.imported['checkpoints'] if self.imported else {}
        for name in self.network_names():
            path = self.start_weights() if name == 'pretrained' else self.checkpoint_path(name)
            record = dict(self.networks.get(name) or {})
            if path.is_file():
                record.update(hash=file_hash(path), path=relative(path, self.root), source=self.source(name))
                if record['source'].startswith('trained here'):
                    record.update(_training_facts(path.parents[1]))
            elif name in imported:
                record.update(hash=imported[name], source=f'imported from {self.imported["file"]}',
                              seconds=self.imported['times'].get(f'{name}_training_s'))
            if name != 'pretrained' and not self.exp.arms[name].weights:
                record['iteration'] = self.evaluated_iteration(name) or self.arm_iters(name)
            self.networks.put(name, record)

    def source(self, name: str) -> str:
        if name != 'pretrained':
            spec = self.exp.arms[name]
            if spec.average:
                return f'the mean weights of {spec.average[0]}\'s checkpoints over {spec.average[1]} iterations'
            if spec.branch:
                return f'trained here, continuing {spec.branch[0]} from iteration {spec.branch[1]}'
            return 'given weights' if spec.weights else 'trained here'
        if 'train' in self.exp.start:
            return 'trained here'
        return 'the official network, converted' if 'official' in self.exp.start else 'given weights'

    def net(self, name: str) -> torch.nn.Module:
        if name not in self._nets:
            path = self.start_weights() if name == 'pretrained' else self.checkpoint_path(name)
            if not path.is_file():
                raise SRDistillError(f'{path}: missing, and the imported rows do not cover what needs it')
            self._nets[name] = load_mzsr(path, self.exp.scale)
        return self._nets[name]

    # --- held-out checkpoint choice ----------------------------------------------------------------------
    def choose(self, arm: str) -> None:
        """Evaluate ``arm``'s checkpoints on the held-out photographs (and the curve sets, for the report only) and
        record the best iteration by held-out mean MZSR(``steps``) PSNR."""
        spec, schedule, scale = self.exp.arms[arm].choose, self.exp.arms[arm].schedule, self.exp.scale
        store = JsonStore(self.work / 'choice' / f'{arm}.json')
        photos = _photos(spec.photos, spec.crop, scale)
        images = {'held-out': [hr for _, hr in photos],
                  **{s.name: [hr for _, hr in benchmark_images(s, scale)] for s in self.exp.sets
                     if s.name in spec.curve_sets}}
        curves = {}
        checkpoints = {it: p for it, p in saved_checkpoints(self.models(arm)).items() if it % spec.every == 0}
        for it, path in tqdm(checkpoints.items(), desc=f'{arm}: held-out choice', unit='ckpt'):
            key = (f'{it}|{file_hash(path)}|{",".join(spec.kernels)}|steps={list(spec.all_steps)}|{schedule}|'
                   f'{",".join(stem for stem, _ in photos)}|crop={spec.crop}|{",".join(images)}')
            if store.get(key) is None:
                net = load_mzsr(path, scale)
                store.put(key, {name: _mean_rows([
                    mzsr_rows(net, *official_lr(hr, k, scale), hr, scale, spec.all_steps, schedule)
                    for k in spec.kernels for hr in hrs]) for name, hrs in images.items()})
            curves[it] = store.get(key)
        if not curves:
            raise SRDistillError(f'arms.{arm}.choose: no checkpoint of {self.models(arm)} at a multiple of '
                                 f'{spec.every}')
        choice = {it: c['held-out'][f'mzsr{spec.steps}'] for it, c in curves.items()}
        record = dict(self.networks.get(arm) or {})
        record.update(chosen=best_on_validation(choice), choice_curve=choice, curves=curves,
                      choice_photos=[stem for stem, _ in photos])
        self.networks.put(arm, record)


def run_zero_shot(exp: ZeroShotExperiment, root: Path, train: bool = True, report: bool = True,
                  num_gpu: int = 0) -> Path | None:
    """Advance the experiment as far as it goes; return the report's path (None with ``report`` False)."""
    runner = ZeroShotRunner(exp, root, num_gpu)
    torch.set_num_threads(exp.threads)
    if train:
        runner.check_inputs()
        started = time.perf_counter()
        runner.train()
        runner.make_averages()
        with FileLock(runner.work / 'locks' / 'training.lock'):  # one worker chooses; the others read its choice
            runner.networks = JsonStore(runner.work / 'networks.json')  # as the last worker left it
            runner.resolve_networks()  # the hashes the choice and the rows are keyed by
            for arm, spec in exp.arms.items():
                if spec.choose:
                    runner.choose(arm)
            runner.resolve_networks()
        table = kernel_table(runner)
        if runner.imported:
            table.seed_imported(runner.imported['rows'])
        table.evaluate()
        blind = blind_table(runner)
        if runner.imported and runner.imported.get('blind_rows'):
            blind.seed_imported(runner.imported['blind_rows'], runner.imported['checkpoints'])
        blind.evaluate()
        print(f'{exp.name}: trained and evaluated in {time.perf_counter() - started:.0f} s', flush=True)
    if not report:
        return None
    with FileLock(runner.work / 'locks' / 'report.lock'):
        networks = {name: runner.networks.get(name) or {} for name in runner.network_names()}
        return write_zero_shot_report(exp, root, networks, kernel_table(runner).rows_by_unit(), runner.imported,
                                      blind_table(runner).rows())


def kernel_table(runner: ZeroShotRunner) -> KernelTable:
    """The experiment's fixed-kernel table over the runner's networks (keyed by their recorded weights hashes)."""
    hashes = {name: (runner.networks.get(name) or {}).get('hash') for name in runner.network_names()}
    return KernelTable(runner.exp, runner.work, runner.net, hashes)


def blind_table(runner: ZeroShotRunner) -> BlindTable:
    """The experiment's blind table over the runner's networks (keyed by their recorded weights hashes)."""
    hashes = {arm: (runner.networks.get(arm) or {}).get('hash') for arm in runner.exp.blind.arms}
    return BlindTable(runner.exp, runner.work, runner.net, hashes)


def _iters(total_iter: int | None) -> tuple[str, ...]:
    return (f'train:total_iter={total_iter}', ) if total_iter else ()


def _training_facts(experiment: Path) -> dict:
    """Training seconds and devices of a BasicSR experiment folder, from its training record (none: not recorded)."""
    try:
        stretches = read_training_record(experiment)['stretches']
    except SRDistillError:
        return {}
    return {'seconds': sum(s['seconds'] or 0 for s in stretches),
            'device': ' + '.join(sorted({s.get('device') or 'not recorded' for s in stretches}))}


def _photos(folder: Path, crop: int, scale: int) -> list[tuple[str, torch.Tensor]]:
    """Each photograph's centre ``crop`` (a multiple of ``scale``) as ``(stem, 1x3xHxW RGB in [0, 1])``."""
    out = []
    for path in list_images(folder):
        img = read_image(path)
        h, w = img.shape[:2]
        side = min(h, w, crop) // scale * scale
        top, left = (h - side) // 2, (w - side) // 2
        rgb = img[top:top + side, left:left + side, ::-1].copy()
        out.append((path.stem, torch.from_numpy(rgb).permute(2, 0, 1)[None]))
    return out


def _mean_rows(rows: list[dict]) -> dict[str, float]:
    """``{'mzsr<n>': mean PSNR}`` over images of ``mzsr_rows`` results."""
    return {name: sum(r[name][0] for r in rows) / len(rows) for name in rows[0]}
