"""The config schema: defaults, file and override layering, and errors that name the fix."""

import pytest
from omegaconf import OmegaConf

from unity.config import SCHEMA_VERSION, Config, ConfigError, all_keys, load, load_run_config
from unity.config.migrate import MOVED_IN_2

FROZEN_V1 = "tests/data/config_v1.yaml"


def test_defaults_file_and_overrides_layer_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_steps: 7\noptim:\n  lr: 0.01\ndata:\n  size: 32\n")
    config = load(str(path), ["train.max_steps=9", "run.name=abl"])
    assert config.train.max_steps == 9  # override beats file
    assert config.optim.lr == 0.01  # file beats default
    assert config.data.size == 32
    assert config.run.name == "abl"
    assert config.run.dir == "runs"  # default kept
    assert isinstance(config.train.max_steps, int)


def test_keys_scripts_rely_on_exist():
    keys = set(all_keys())
    for key in (
        "run.name",
        "run.dir",
        "train.max_steps",
        "checkpoint.save_every",
        "train.eval_every",
        "train.resume",
        "parallel.engine",
        "parallel.zero_stage",
        "data.root",
    ):
        assert key in keys


def test_unknown_key_names_it_and_the_closest_valid_keys():
    with pytest.raises(ConfigError) as e:
        load(None, ["train.max_step=3"])
    assert "'train.max_step'" in str(e.value) and "train.max_steps" in str(e.value)
    with pytest.raises(ConfigError, match="closest valid keys: data.synth.seed"):
        load(None, ["data.synth.sed=3"])


def test_unknown_key_in_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  attn: sdpa\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.attn'.*model.attention"):
        load(str(path))


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"'train.max_steps' expects int.*'abc'"):
        load(None, ["train.max_steps=abc"])
    with pytest.raises(ConfigError, match=r"'data.crop_scale\[0\]' expects list\[float\]"):
        load(None, ["data.crop_scale=[x,1.0]"])


def test_choices_and_modality_names_are_checked():
    with pytest.raises(ConfigError, match="'parallel.engine' is 'gpu'; choose one of plain, deepspeed"):
        load(None, ["parallel.engine=gpu"])
    with pytest.raises(ConfigError, match="'data.modalities' lists 'normals'"):
        load(None, ["data.modalities=[depth,normals]"])


def test_missing_file_and_malformed_override():
    with pytest.raises(ConfigError, match="does not exist"):
        load("/nonexistent/c.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load(None, ["train.max_steps"])


def test_shipped_configs_load():
    load("configs/tiny.yaml")


def test_model_section_is_validated():
    with pytest.raises(ConfigError, match="'model.switcher' is 'film'; choose one of adaln, token, none"):
        load(None, ["model.switcher=film"])
    with pytest.raises(ConfigError, match="'model.hidden' \\(130\\) must be a multiple of 'model.heads' \\(4\\)"):
        load(None, ["model.hidden=130"])


def test_every_schema_field_documents_itself():
    """Each knob carries a one-line meaning as a trailing comment where its dataclass is defined."""
    import inspect

    import models.config
    import unity.config.schema

    source = inspect.getsource(unity.config.schema) + inspect.getsource(models.config)
    for key in all_keys(Config):
        leaf = key.split(".")[-1]
        lines = [l for l in source.splitlines() if l.strip().startswith(f"{leaf}:")]
        assert lines and all("#" in l for l in lines if "Config" not in l.split(":")[1]), key


def test_a_moved_key_names_its_new_place(tmp_path):
    with pytest.raises(ConfigError, match="'train.lr' has moved to 'optim.lr'"):
        load(None, ["train.lr=0.1"])
    path = tmp_path / "old.yaml"
    path.write_text("train:\n  curriculum: []\n")
    with pytest.raises(ConfigError, match="'train.curriculum' has moved to 'routing.curriculum'"):
        load(str(path))
    with pytest.raises(ConfigError, match="'train.tasks' has moved to 'routing.tasks'"):
        load(None, ["train.tasks.cond=1"])


def test_every_moved_key_exists_in_the_schema():
    keys = set(all_keys())
    assert all(new in keys and old not in keys for old, new in MOVED_IN_2.items())


def test_a_run_config_of_schema_1_is_migrated():
    """A frozen copy of a run's config.yaml from before the sections split loads, equal to today's tiny config."""
    with pytest.raises(ConfigError, match="has moved"):  # as user input it is refused...
        load(FROZEN_V1)
    migrated = load_run_config(FROZEN_V1)  # ...as a saved run it is migrated
    assert migrated.schema_version == SCHEMA_VERSION and migrated.optim.lr == 0.001 and migrated.ema.decay == 0.99
    assert migrated.routing.curriculum[0].tasks.est == 0.5 and migrated.flow.t_shift == 3.0
    assert OmegaConf.to_container(migrated) == OmegaConf.to_container(load("configs/tiny.yaml"))


def test_a_saved_config_reloads_unchanged(tmp_path):
    config = load("configs/tiny.yaml", ["optim.lr=0.5"])
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(config))
    assert OmegaConf.to_container(load_run_config(str(path))) == OmegaConf.to_container(config)
