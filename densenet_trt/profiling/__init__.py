"""Profiling: timers, statistics, measured throughput, per-layer timing and the reports."""
