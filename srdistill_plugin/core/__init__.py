"""Framework-free logic (plain numpy / torch): every module has one job and is tested on its own."""
