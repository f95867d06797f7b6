"""Train with BasicSR options: ``srdistill-train -opt options/....yml [--auto_resume] [--launcher pytorch]``."""
from __future__ import annotations

from srdistill_plugin.commands.basicsr_command import run_basicsr_command
from srdistill_plugin.engine.train import train_pipeline


def main(root: str | None = None) -> None:
    run_basicsr_command(train_pipeline, root)


if __name__ == '__main__':
    main()
