"""Test with an MMagic config: ``python tools/mm_test.py configs/test/swinir_x4_benchmarks.py CHECKPOINT``."""
from srdistill.cli import run_cli
from srdistill_plugin.mm.cli import parse_config, run


def main() -> None:
    cfg, _ = parse_config(__doc__, with_checkpoint=True)
    run(cfg, 'test')


if __name__ == '__main__':
    run_cli(main)
