"""``python -m densenet_trt``: the command line, for source trees run without installing."""

from .cli import main

main(prog_name="densenet-trt")
