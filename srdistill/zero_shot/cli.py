"""``srdistill-zeroshot``: zero-shot SR of your photos with the shipped MZSR weights (imports no training framework).

``srdistill-zeroshot photo.png --output out [--kernel K.mat|DIR|estimate|gd2.0] [--steps N] [--model directx2|PATH]``
"""
from __future__ import annotations

from srdistill.cli import run_cli
from srdistill.zero_shot.inference import main as inference_main


def main() -> None:
    run_cli(inference_main)


if __name__ == '__main__':
    main()
