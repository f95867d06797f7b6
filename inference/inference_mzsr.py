"""Zero-shot SR of given LR images with their kernels (MZSR adaptation per image), in the style of BasicSR's
``inference/`` scripts:

    python inference/inference_mzsr.py --input LR_DIR --kernel K.mat|K_DIR --output DIR --steps 10 [--model PTH]
"""
from srdistill.cli import run_cli
from srdistill.zero_shot.inference import main

if __name__ == '__main__':
    run_cli(main)
