"""Blind kernel estimation for LR photos (KernelGAN-style):

    python tools/estimate_kernel.py --input LR_DIR --output K_DIR --scale 2|4
"""
from srdistill.cli import run_cli
from srdistill_plugin.zero_shot.estimate_kernels import main

if __name__ == '__main__':
    run_cli(main)
