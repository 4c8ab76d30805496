"""Side-by-side measurements (README, "Layout"; docs/performance.md). Each is a module run
from the repository root, ``python -m benchmarks.NAME [--help]``; they import the
installed ``goldilocks`` package (setup.sh installs it) and share ``benchmarks.timing``.
"""
