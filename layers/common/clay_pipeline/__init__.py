"""Clay pipeline library: shared by every function through the CommonLayer."""

__version__ = "0.1.0"
