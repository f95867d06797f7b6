"""srdistill: the framework-free side of the toolkit (plain torch / numpy / OpenCV): ``srdistill.core`` holds the
algorithms, ``srdistill.zero_shot`` the zero-shot SR command. Importing it registers nothing and imports no training
framework; ``import srdistill_plugin`` registers the BasicSR side."""
