"""sfdet: SlowFast spatio-temporal action detection (AVA-style)."""

__version__ = "0.1.0"
