"""``srdistill-zeroshot`` (``srdistill.zero_shot.cli``), also as ``python -m srdistill_plugin.commands.zeroshot``."""
from srdistill.zero_shot.cli import main

if __name__ == '__main__':
    main()
