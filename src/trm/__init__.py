"""trm: Tiny Recursive Models (arXiv 2510.04871) and HRM, faithful and fast, in PyTorch."""

__version__ = "0.1.0"
