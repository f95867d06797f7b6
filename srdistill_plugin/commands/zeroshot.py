"""Zero-shot SR of your photos with the shipped MZSR weights:
``srdistill-zeroshot photo.png --output out [--kernel K.mat|DIR|estimate|gd2.0] [--steps N] [--model directx2|PATH]``."""
from __future__ import annotations

from srdistill_plugin.cli import run_cli
from srdistill_plugin.zero_shot.inference import main as inference_main


def main() -> None:
    run_cli(inference_main)


if __name__ == '__main__':
    main()
