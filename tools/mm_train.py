"""Train with an MMagic config: ``python tools/mm_train.py configs/swinir_distilled_x4.py [--resume] [--work-dir D]``."""
from srdistill.cli import run_cli
from srdistill_plugin.mm.cli import parse_config, run


def main() -> None:
    cfg, _ = parse_config(__doc__, with_checkpoint=False)
    run(cfg, 'train')


if __name__ == '__main__':
    run_cli(main)
