"""Test with BasicSR options: ``srdistill-test -opt options/test/....yml``; writes results/<name>/metrics.json."""
from __future__ import annotations

from srdistill_plugin.commands.basicsr_command import run_basicsr_command
from srdistill_plugin.engine.test import test_pipeline


def main(root: str | None = None) -> None:
    run_basicsr_command(test_pipeline, root)


if __name__ == '__main__':
    main()
