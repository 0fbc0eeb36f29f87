"""skiff: a Docker-compatible container engine and orchestrator written in Python."""

__version__ = "0.1.0"
