"""BasicSR's train and test entries with the plugin's additions (sampler choice, CPU resume, atomic checkpoints,
gloo on CPU-only machines, metrics files)."""
