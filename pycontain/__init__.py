"""pycontain: a small, readable, root-run Linux container runtime."""

__version__ = "0.1.0"
