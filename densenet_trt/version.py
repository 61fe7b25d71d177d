"""The package version, read by setup.py and written into every document the tool writes."""

__version__ = "0.1.0"
