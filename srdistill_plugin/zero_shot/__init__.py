"""Zero-shot SR of given LR photos (MZSR / ZSSR adaptation) and the kernel-estimation tool."""
