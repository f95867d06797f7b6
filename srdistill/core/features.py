"""Stage 2 of the distillation: image features for label-free grouping, and k-means into pseudo-classes.

Two feature modes, always named for what they are:
  * ``clip``: an open_clip image encoder with named weights (a local file, or a pretrained tag / hub repository
    through the Hugging Face cache);
  * ``colour_texture``: a hand-made descriptor (HSV colour histogram + gradient-orientation histogram +
    multi-scale gradient energy), used when no CLIP weights are named. It is *not* CLIP.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.cluster import KMeans

from .errors import SRDistillError, first_line
from .hub import offline_hint

def colour_texture_descriptor(img: np.ndarray) -> np.ndarray:
    """An L2-normalised 148-d descriptor of a float BGR [0, 1] image: 8x4x4 HSV bins, 16 gradient orientations and
    the gradient energy on 4 pyramid levels."""
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


HUB_PREFIX = 'hf-hub:'


class ClipImageEncoder:
    """open_clip image features. ``pretrained`` names the weights as open_clip does: a local checkpoint file, or a
    pretrained tag of ``model_name`` (e.g. ``ViT-B-32`` + ``laion2b_s34b_b79k``) fetched into the Hugging Face cache;
    a ``model_name`` of ``hf-hub:org/repo`` takes config and weights from that hub repository (``pretrained`` None).
    Offline, hub names load from the cache only; a miss is one line naming the model and how to give a local copy."""

    def __init__(self, model_name: str, pretrained: str | Path | None, device: str = 'cpu',
                 model_config: str | None = None):
        import open_clip

        if model_config is not None:  # a custom architecture: an open_clip JSON config named <model_name>.json
            if not Path(model_config).is_file():
                raise SRDistillError(f'option categorize.clip.model_config: {model_config} does not exist')
            open_clip.add_model_config(model_config)
        hub_model = model_name.startswith(HUB_PREFIX)
        if not hub_model and model_name not in open_clip.list_models():
            raise SRDistillError(f'option categorize.clip.model: unknown open_clip model {model_name!r}')
        tags = [] if hub_model else open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained is None and not hub_model:
            raise SRDistillError(f'option categorize.clip.pretrained: required for {model_name} (a local checkpoint '
                                 f'file or one of its tags {tags})')
        local = pretrained is not None and str(pretrained) not in tags
        if local and not Path(pretrained).is_file():
            raise SRDistillError(f'option categorize.clip.pretrained: {pretrained} does not exist (and is not a '
                                 f'pretrained tag of {model_name}: {tags})')
        try:
            model, _, self.preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=None if pretrained is None else str(pretrained), device=device)
        except Exception as err:  # open_clip raises RuntimeError/KeyError/UnpicklingError/FileNotFoundError
            if local:
                raise SRDistillError(f'option categorize.clip.pretrained: {pretrained} is not a {model_name} '
                                     f'checkpoint ({first_line(err)})') from err
            name = model_name if pretrained is None else f'{model_name} {pretrained!r}'
            raise SRDistillError(f'option categorize.clip: {name} is {offline_hint()}; download it once online '
                                 'or give a local checkpoint file as categorize.clip.pretrained') from err
        self.model, self.device = model.eval(), device
        source = f'weights from {pretrained}' if local else f'pretrained {pretrained or "weights of the hub repo"}'
        self.description = f'CLIP image encoder (open_clip {model_name}, {source})'

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
