"""osbuilder: build small, immutable Linux systems from OCI container images."""

__version__ = "0.1.0"
