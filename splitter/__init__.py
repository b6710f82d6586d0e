"""splitter: a reverse proxy for blue/green and canary releases."""

__version__ = "0.1.0"
