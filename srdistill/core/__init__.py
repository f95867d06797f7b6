"""Framework-free logic (plain numpy / torch, no BasicSR or MMEngine import): every module has one job and is tested
on its own. Where BasicSR already has a pure function, ``basicsr_files`` loads its module file without BasicSR's
package import."""
