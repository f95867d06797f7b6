"""Zero-shot SR of given LR photographs with the shipped MZSR weights (``srdistill-zeroshot``): imports torch, numpy and
OpenCV only, so the command answers in seconds."""
