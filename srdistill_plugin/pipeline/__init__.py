"""Entry pipelines that extend BasicSR's where it lacks something (sampler choice, CPU resume, metrics files)."""
