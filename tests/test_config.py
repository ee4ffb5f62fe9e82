"""The config system: YAML + `_base_` + dotted overrides -> typed, validated dataclasses."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from sfdet.config import Config, load_config, save_config
from sfdet.errors import ConfigError
from sfdet.typed_config import apply_overrides, from_dict, read_yaml


@dataclass
class Inner:
    alpha: int = 4
    ratio: float = 0.5
    name: str = "x"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    flag: bool = False
    maybe: float | None = None
    pair: tuple[int, int] = (1, 2)


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    seed: int = 0


@dataclass
class Other:
    alpha: int = 1
    name: str = "y"


@dataclass
class TwoSections:
    inner: Inner = field(default_factory=Inner)
    other: Other | None = None


def test_nested_values_are_typed():
    cfg = from_dict(Outer, {"inner": {"alpha": 8, "ratio": 1, "sizes": [3, 4], "flag": True, "maybe": "1e-7"}})
    assert cfg.inner.alpha == 8
    assert cfg.inner.ratio == 1.0 and isinstance(cfg.inner.ratio, float)
    assert cfg.inner.sizes == [3, 4]
    assert cfg.inner.flag is True
    assert cfg.inner.maybe == pytest.approx(1e-7)  # YAML reads 1e-7 as a string


def test_unknown_key_names_key_and_closest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'inner\.alpah' \(did you mean 'inner\.alpha'\?\)"):
        from_dict(Outer, {"inner": {"alpah": 3}})
    with pytest.raises(ConfigError, match=r"unknown config key 'sed' \(did you mean 'seed'\?\)"):
        from_dict(Outer, {"sed": 3})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"inner": {"alpha": "four"}}, r"'inner\.alpha': expected an integer, got 'four'"),
        ({"inner": {"alpha": True}}, r"'inner\.alpha': expected an integer"),
        ({"inner": {"flag": "yes please"}}, r"'inner\.flag': expected true/false"),
        ({"inner": {"sizes": 3}}, r"'inner\.sizes': expected a list"),
        ({"inner": {"sizes": [1, "b"]}}, r"'inner\.sizes\[1\]': expected an integer"),
        ({"inner": {"pair": [1, 2, 3]}}, r"'inner\.pair': expected 2 values"),
        ({"inner": 5}, r"'inner': expected a mapping"),
    ],
)
def test_wrong_types_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_dotted_overrides_parse_yaml_values():
    data = apply_overrides({"inner": {"alpha": 4}}, ["inner.alpha=8", "inner.sizes=[5, 6]", "inner.name=abc", "seed=3"])
    cfg = from_dict(Outer, data)
    assert (cfg.inner.alpha, cfg.inner.sizes, cfg.inner.name, cfg.seed) == (8, [5, 6], "abc", 3)


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["model.alpha"])


def test_base_files_are_merged_and_overridable(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  alpha: 2\n  beta_inv: 4\nseed: 1\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\nmodel:\n  alpha: 8\n")
    data = read_yaml(tmp_path / "child.yaml")
    assert data == {"model": {"alpha": 8, "beta_inv": 4}, "seed": 1}
    cfg = load_config(tmp_path / "child.yaml", ["model.beta_inv=16"])
    assert isinstance(cfg, Config)
    assert (cfg.model.alpha, cfg.model.beta_inv, cfg.seed) == (8, 16, 1)


def test_unknown_key_in_real_config_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  alhpa: 4\n")
    with pytest.raises(ConfigError, match=r"'model\.alhpa' \(did you mean 'model\.alpha'\?\)"):
        load_config(path)


def test_a_key_in_the_wrong_section_points_to_the_section_that_has_it():
    # README once said `model.init=NAME`; the key is `train.init`, in no way "close" to a model key.
    with pytest.raises(ConfigError, match=r"^unknown config key 'model\.init' \(did you mean 'train\.init'\?\)$"):
        load_config(None, ["model.init=slowfast_r50_detection"])
    with pytest.raises(ConfigError, match=r"^unknown config key 'lr' \(did you mean 'train\.lr'\?\)$"):
        load_config(None, ["lr=0.1"])
    with pytest.raises(ConfigError, match=r"^unknown config key 'train\.seed' \(did you mean 'seed'\?\)$"):
        load_config(None, ["train.seed=1"])
    # the same name in several other sections: all of them; none: the closest key of its own section
    with pytest.raises(ConfigError, match=r"^unknown config key 'alpha' \(did you mean 'inner\.alpha' or 'other\.alpha'\?\)$"):
        from_dict(TwoSections, {"alpha": 1})
    with pytest.raises(ConfigError, match=r"^unknown config key 'other\.nam' \(did you mean 'other\.name'\?\)$"):
        from_dict(TwoSections, {"other": {"nam": "x"}})
    # nothing close in its own section: a close name elsewhere, else no hint
    with pytest.raises(ConfigError, match=r"^unknown config key 'model\.lrr' \(did you mean 'train\.lr'\?\)$"):
        load_config(None, ["model.lrr=1"])
    with pytest.raises(ConfigError, match=r"^unknown config key 'model\.qqq'$"):
        load_config(None, ["model.qqq=1"])


def test_a_section_read_on_its_own_keeps_its_prefix_in_hints():
    from sfdet.models.config import ModelConfig

    with pytest.raises(ConfigError, match=r"^unknown config key 'model\.alhpa' \(did you mean 'model\.alpha'\?\)$"):
        from_dict(ModelConfig, {"alhpa": 4}, prefix="model")


def test_importing_the_config_loads_neither_torch_nor_pyav():
    code = "import sys, sfdet.config; print(sorted({'torch', 'av', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_yaml_and_missing_file_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_saved_config_loads_back_identically(tmp_path):
    cfg = load_config(None, ["model.alpha=8", "seed=7"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg
