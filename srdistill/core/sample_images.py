"""The embedded default data: public-domain / CC0 photographs bundled in scikit-image's wheel (no network)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .atomic_io import atomic_path

# Photographs and natural textures that skimage.data loads from the installed wheel.
SKIMAGE_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field', 'immunohistochemistry',
                  'stereo_motorcycle', 'camera', 'brick', 'grass', 'gravel', 'coins', 'moon', 'clock')


def load_skimage_photos() -> dict[str, np.ndarray]:
    """``{name: uint8 BGR or greyscale image}``; the stereo pair gives two images."""
    from skimage import data

    photos = {}
    for name in SKIMAGE_PHOTOS:
        img = getattr(data, name)()
        images = {f'{name}_left': img[0], f'{name}_right': img[1]} if isinstance(img, tuple) else {name: img}
        for key, arr in images.items():
            photos[key] = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    return photos


def export_skimage_photos(folder: str | Path) -> list[Path]:
    """Write the bundled photographs as PNGs into ``folder`` (skipping ones already there)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in load_skimage_photos().items():
        path = folder / f'{name}.png'
        if not path.exists():
            with atomic_path(path) as tmp:
                cv2.imwrite(str(tmp), img)
        paths.append(path)
    return paths
