"""CLI verb groups. Each module has ``register(subparsers)``."""
