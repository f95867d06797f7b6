"""The user-facing commands, each a ``main(root=None)`` (``root``: where relative option paths, ``experiments/`` and
``results/`` live; the working directory by default). Installed as console scripts (``srdistill-train`` ...),
reachable as ``python -m srdistill_plugin.commands.<name>``; ``tools/*.py`` call them with the clone's root."""
