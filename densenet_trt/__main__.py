"""``python -m densenet_trt``: the command line, for source trees run without installing."""

from .console import main

main()
