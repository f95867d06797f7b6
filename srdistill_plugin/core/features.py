"""Stage 2 of the distillation: image features for label-free grouping, and k-means into pseudo-classes.

Two feature modes, always named for what they are:
  * ``clip``: an open_clip image encoder whose weights come from a local checkpoint file (no download);
  * ``colour_texture``: a hand-made descriptor (HSV colour histogram + gradient-orientation histogram +
    multi-scale gradient energy), used when no CLIP checkpoint is given. It is *not* CLIP.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.cluster import KMeans

from .errors import SRDistillError, first_line

FEATURE_MODES = ('clip', 'colour_texture')


def colour_texture_descriptor(img: np.ndarray) -> np.ndarray:
    """An L2-normalised 160-d descriptor of a float BGR [0, 1] image."""
    u8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    hsv = cv2.cvtColor(u8, cv2.COLOR_BGR2HSV)
    colour = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    colour /= max(colour.sum(), 1)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    parts = [colour]
    for level in range(4):
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        mag, ang = cv2.cartToPolar(gx, gy)
        if level == 0:
            hist = np.bincount((ang.ravel() / (2 * np.pi) * 16).astype(int) % 16, weights=mag.ravel(), minlength=16)
            parts.append(hist / max(hist.sum(), 1e-8))
        parts.append(np.array([mag.mean()]))
        grey = cv2.pyrDown(grey)
    feature = np.concatenate(parts).astype(np.float32)
    return feature / max(np.linalg.norm(feature), 1e-8)


class ClipImageEncoder:
    """open_clip image features from a **local** checkpoint: ``ClipImageEncoder('ViT-B-32', '/path/ckpt.pt')``."""

    def __init__(self, model_name: str, checkpoint: str | Path, device: str = 'cpu', model_config: str | None = None):
        import open_clip

        if model_config is not None:  # a custom architecture: an open_clip JSON config named <model_name>.json
            if not Path(model_config).is_file():
                raise SRDistillError(f'option categorize.clip.model_config: {model_config} does not exist')
            open_clip.add_model_config(model_config)
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise SRDistillError(f'option categorize.clip.checkpoint: {checkpoint} does not exist')
        if model_name not in open_clip.list_models():
            raise SRDistillError(f'option categorize.clip.model: unknown open_clip model {model_name!r}')
        try:
            model, _, self.preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(checkpoint),
                                                                              device=device)
        except Exception as err:  # open_clip raises RuntimeError/KeyError/UnpicklingError for a wrong file
            raise SRDistillError(f'option categorize.clip.checkpoint: {checkpoint} is not a {model_name} '
                                 f'checkpoint ({first_line(err)})') from err
        self.model, self.device = model.eval(), device
        self.description = f'CLIP image encoder (open_clip {model_name}, weights from {checkpoint})'

    @torch.no_grad()
    def __call__(self, img: np.ndarray) -> np.ndarray:
        from PIL import Image

        rgb = Image.fromarray((np.clip(img[:, :, ::-1], 0, 1) * 255).astype(np.uint8))
        feature = self.model.encode_image(self.preprocess(rgb)[None].to(self.device))[0]
        return torch.nn.functional.normalize(feature, dim=0).cpu().numpy()


def cluster(features: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """k-means (scikit-learn, 10 restarts) of L2-normalised features into ``num_classes`` pseudo-classes."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise SRDistillError(f'option categorize.num_classes: must be a positive integer, got {num_classes!r}')
    if num_classes > len(features):
        raise SRDistillError(f'option categorize.num_classes: {num_classes} is larger than the number of images '
                             f'with selected patches ({len(features)})')
    return KMeans(n_clusters=num_classes, n_init=10, random_state=seed).fit_predict(features).astype(int)
