"""Developer tools that are not part of the service: run with ``python -m scripts.<name>``."""
