"""Engines: the build spec and precision table, graph captures, the manifest, build, load, verify."""
