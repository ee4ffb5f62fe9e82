"""Action-detection models: `build_model(ModelConfig)` -> `ActionDetector`; `load_checkpoint(path_or_name)`."""

from sfdet.models.config import ModelConfig

__all__ = ["ModelConfig", "ActionDetector", "build_model", "load_checkpoint"]


def __getattr__(name: str):
    # Imported on first use: `sfdet.config` reads `ModelConfig` without loading torch, and
    # checkpoint loading pulls in format converters that building a model does not need.
    if name in ("ActionDetector", "build_model"):
        from sfdet.models import detector

        return getattr(detector, name)
    if name == "load_checkpoint":
        from sfdet.models.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'sfdet.models' has no attribute {name!r}")
