import numpy as np
import pytest

from realtime.config import load_config, parse_override
from realtime.config.presets import find_preset, preset_names
from realtime.core.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_presets_load():
    cfg = load_config()
    assert cfg.source.pace == "realtime" and cfg.window.stride_seconds == 0.5
    assert {"default", "fitness", "accessibility", "feed", "rtsp"} <= set(preset_names())
    for name in preset_names():         # by name and by path: the same settings
        assert load_config(name) == load_config(find_preset(name))
    assert load_config("default").model.name == "i3d-kinetics400"
    assert [s.type for s in load_config("feed").sinks] == ["zmq"]


def test_overrides_are_typed_and_nested():
    cfg = load_config(None, ["window.stride_seconds=0.25", "source.loop=true",
                             "source.reconnect.max_delay=3", "source.uri=rtsp://h/x"])
    assert cfg.window.stride_seconds == 0.25 and cfg.source.loop is True
    assert cfg.source.reconnect.max_delay == 3.0 and cfg.source.uri == "rtsp://h/x"


def test_unknown_key_names_the_path_and_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "source:\n  pase: fast\n"))
    msg = str(e.value)
    assert "source.pase: unknown key" in msg and "pace" in msg and str(tmp_path) in msg


def test_bad_value_names_key_and_allowed_values():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["source.pace=slow"])
    assert "source.pace" in str(e.value) and "'realtime'" in str(e.value) and "slow" in str(e.value)


@pytest.mark.parametrize("override,key", [
    ("window.stride_seconds=0", "window.stride_seconds"),
    ("window.stride_seconds=-1", "window.stride_seconds"),
    ("inference.top_k=abc", "inference.top_k"),
    ("source.reconnect.initial_delay=0", "source.reconnect.initial_delay"),
    ("model.device=tpu", "model.device"),
    ("nonsense.key=1", "nonsense"),
])
def test_out_of_range_values_fail(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert key in str(e.value)


def test_unknown_sink_type_lists_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "sinks:\n  - type: fax\n"))
    assert "sinks.0.type" in str(e.value) and "jsonl" in str(e.value)


def test_sink_option_errors_name_the_sink(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "sinks:\n  - type: jsonl\n    file: x\n"))
    assert "sinks.0.file: unknown key" in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "source: [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "source: !!python/object/apply:os.system ['echo hi']\n"))


def test_parse_override_errors():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("window.stride_seconds")
    with pytest.raises(ConfigError, match="empty part"):
        parse_override("window..x=1")
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_preset_label_lists_name_real_kinetics_classes():
    from realtime.models.i3d import kinetics400_labels
    from realtime.core.smoothing import LabelSmoother, SmoothingParams
    labels = kinetics400_labels()
    named = 0
    for preset in preset_names():
        s = load_config(preset).smoothing
        for key in ("allow", "deny"):
            unknown = [x for x in getattr(s, key) if x not in labels]
            assert not unknown, f"preset {preset}: smoothing.{key} names {unknown}, not Kinetics-400 classes"
        assert not [x for x in s.rename if x not in labels], f"preset {preset}: smoothing.rename"
        smoother = LabelSmoother(labels, SmoothingParams(allow=tuple(s.allow), deny=tuple(s.deny),
                                                         rename=s.rename))
        if s.allow:     # exactly the listed classes are reported, under their friendly names
            kept = set(s.allow) - set(s.deny)
            assert sorted(np.flatnonzero(smoother.mask)) == sorted(labels.index(x) for x in kept)
            assert {smoother.names[labels.index(x)] for x in s.allow} == {s.rename.get(x, x) for x in s.allow}
        named += len(s.allow) + len(s.deny) + len(s.rename)
    assert named > 0, "no preset names a label: this test checks nothing"
