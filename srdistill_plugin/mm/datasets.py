"""MMagic datasets: BasicSR-format LMDBs (HR-only, e.g. the distilled set) and MZSR meta-learning tasks."""
from __future__ import annotations

from pathlib import Path

from mmagic.registry import DATASETS
from mmengine.dataset import BaseDataset
from torch.utils.data import Dataset

from srdistill.core.lmdb_io import read_meta_keys
from srdistill_plugin.data.hr_only_dataset import CLASS_INFO, read_class_info
from srdistill_plugin.data.mzsr_dataset import MZSRTaskDataset


@DATASETS.register_module()
class BasicSRLMDBDataset(BaseDataset):
    """Items ``{'key', 'lmdb_path', 'gt_path', 'class_id'}`` of a BasicSR LMDB (keys from ``meta_info.txt``);
    the pipeline loads them with ``LoadImageFromLMDB``. ``class_ids`` (from ``class_info.txt`` in the LMDB, or
    ``class_info``) feed ``ClassBalancedSampler``."""

    def __init__(self, data_root: str, pipeline: list, class_info: str | None = None, **kwargs):
        self.class_info = class_info
        super().__init__(data_root=data_root, pipeline=pipeline, **kwargs)

    def load_data_list(self) -> list[dict]:
        root = Path(self.data_root)
        keys = read_meta_keys(root)
        info = Path(self.class_info) if self.class_info else root / CLASS_INFO
        classes = read_class_info(info, keys) if info.is_file() else [-1] * len(keys)
        return [{'key': k, 'lmdb_path': str(root), 'gt_path': f'{root}/{k}', 'class_id': c}
                for k, c in zip(keys, classes)]

    @property
    def class_ids(self) -> list[int] | None:
        ids = [self.get_data_info(i)['class_id'] for i in range(len(self))]
        return None if -1 in ids else ids


@DATASETS.register_module()
class MZSRTasks(Dataset):
    """MZSR tasks for MMEngine: the BasicSR ``MZSRTaskDataset`` built from keyword arguments (same options).
    Use with ``collate_fn=dict(type='default_collate')``."""

    def __init__(self, **opt):
        self.tasks = MZSRTaskDataset({'phase': 'train', **opt})

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> dict:
        return self.tasks[index]
