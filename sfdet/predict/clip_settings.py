"""The clip settings of a model at prediction time: which frames, how resized and normalised.

Clip settings (`DataConfig`: frames, stride, Slow sampling, short side,
mean/std, frame-rate grid, time offset) come from, in order: `--config`
(explicit wins), the clip recipe the checkpoint carries (`CheckpointInfo.recipe`:
stored by `sfdet train` / `sfdet convert`, a registry entry's, a PySlowFast
cfg's, or derived from an older checkpoint's training config), or, for a
PyTorchVideo / PySlowFast file whose architecture equals a registry model's,
that model's recipe (one line says so). Anything else: one line asking for `--config`.
"""

from __future__ import annotations

from typing import Callable

from sfdet.config import Config, load_config
from sfdet.data.config import DataConfig
from sfdet.errors import ConfigError
from sfdet.models.checkpoint import ASSUMED_CLIPS, CheckpointInfo, assumed_line, label_map_conflict, registry_recipe
from sfdet.models.recipe import ClipRecipe
from sfdet.typed_config import from_dict


def recipe_data_config(recipe: ClipRecipe, base: DataConfig | None = None) -> DataConfig:
    """`base` (default: DataConfig's defaults) with the recipe's clip fields (checked as DataConfig values)."""
    return recipe.apply_to(base if base is not None else DataConfig())


def clip_settings(weights: str, info: CheckpointInfo, config_path: str | None = None, overrides: list[str] = (),
                  log: Callable[[str], None] = print) -> DataConfig:
    """The DataConfig whose clip/test-transform fields match how the model was trained (see module doc).

    `info` is the `CheckpointInfo` of the loaded weights; `log` prints the line that says a registry
    model's recipe is used.
    """
    if config_path is not None or overrides:
        return load_config(config_path, overrides).data
    if info.recipe is not None:
        return recipe_data_config(info.recipe)
    if info.train_config is not None:  # stored, but no recipe could be read from it: say what is wrong
        try:
            return from_dict(Config, info.train_config).data
        except ConfigError as exc:
            raise ConfigError(f"{weights}: its stored training config is invalid ({exc}); "
                              "pass the training config with --config YAML") from None
    match = registry_recipe(info, str(weights))
    if match is not None:
        log(match.note)
        return recipe_data_config(match.recipe)
    raise ConfigError(
        f"{weights} does not say how its clips were made (frames, stride, short side); "
        "pass the training config with --config YAML"
    )


def say_assumptions(weights: str, info: CheckpointInfo, clips_given: bool, clip_notes: list[str],
                    log: Callable[[str], None] = print) -> None:
    """Log what the weights leave unsaid (`assumed_line`: ONE line, which also names a registry model's clip
    recipe, so `clip_settings`'s own note about it is dropped) and a --label-map whose names differ."""
    stated = (ASSUMED_CLIPS,) if clips_given else ()
    line = assumed_line(info, str(weights), "predict", stated=stated)
    if line:
        log(f"warning: {line}")
    if not line or ASSUMED_CLIPS in stated or ASSUMED_CLIPS not in info.assumed:
        for note in clip_notes:
            log(note)
    conflict = label_map_conflict(info)
    if conflict:
        log(f"warning: {conflict}")


def model_clip_settings(weights: str, info: CheckpointInfo, config_path: str | None = None,
                        overrides: list[str] = (), log: Callable[[str], None] = print) -> DataConfig:
    """`clip_settings`, then one line on what the weights leave unsaid (`say_assumptions`).

    What `predict` (both backends) and `export` call, so every command says the same about a file.
    """
    clip_notes: list[str] = []
    data_cfg = clip_settings(weights, info, config_path, overrides, log=clip_notes.append)
    say_assumptions(weights, info, config_path is not None or bool(overrides), clip_notes, log)
    return data_cfg
