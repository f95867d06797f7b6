"""HR images -> BasicSR LMDBs: ``python tools/prepare_data.py --input HR/ --output datasets/mypool [--skimage]``."""
from srdistill_plugin.commands.prepare import main

if __name__ == '__main__':
    main()
