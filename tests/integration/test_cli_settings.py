"""Every setting reachable from the command line: ``--set`` into lists (sinks, streams),
``--sink NAME[:ARG][,KEY=VALUE]`` with the config file's options kept, and values that would
silently go wrong (a port above 65535) refused as configuration errors (exit 2)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from conftest import REPO, SHARED_CLIPS, i3d_weights_or_skip
from realtime.config import check_bind_endpoint, load_config
from realtime.core.errors import ConfigError
from realtime.sinks import parse_sink_spec, sinks_from_specs
from realtime.sinks.jsonl import JsonlSink


def realtime(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realtime", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_set_reaches_a_presets_sink_options():
    cfg = load_config("accessibility", ["sinks.0.save_dir=/tmp/wavs", "sinks.0.speak=false"])
    speech = cfg.sinks[0]
    assert speech.type == "speech" and speech.save_dir == "/tmp/wavs" and speech.speak is False
    assert speech.template == "Now {label}."                 # the preset's own options stay


def test_set_appends_a_sink_and_addresses_streams():
    cfg = load_config(None, ["sinks.1.type=jsonl", "sinks.1.path=out.jsonl",
                             "streams.0.uri=a.mp4", "streams.1.uri=b.mp4", "streams.1.name=cam-b"])
    assert [s.type for s in cfg.sinks] == ["console", "jsonl"] and cfg.sinks[1].path == "out.jsonl"
    assert [(s.uri, s.name) for s in cfg.streams] == [("a.mp4", None), ("b.mp4", "cam-b")]


@pytest.mark.parametrize("override,message", [
    ("sinks.4.path=x", "--set sinks.4.path: sinks.4 does not exist (sinks has 2 item(s): 0-1; 2 adds one)"),
    ("sinks.first.path=x", "--set sinks.first.path: sinks is a list: use an index, e.g. sinks.0"),
    ("sinks.0.save_dirr=x", "sinks.0.save_dirr: unknown key (allowed: announce_endings, announce_uncertain, "
                            "cooldown_seconds, earcons, end_template, engine, max_per_minute, maybe_min_score, "
                            "maybe_template, min_score, now_template, rate, save_dir, speak, stale_seconds, "
                            "template, type, urgent_labels, urgent_template, verbosity, voice, volume)"),
    ("model.name.x=1", "--set model.name.x: model.name is a value, not a section"),
])
def test_set_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config("accessibility", [override])
    assert message in str(e.value)


@pytest.mark.parametrize("spec,expected", [
    ("console", {"type": "console"}),
    ("jsonl:out/e.jsonl", {"type": "jsonl", "path": "out/e.jsonl"}),
    ("speech,save_dir=wav,rate=150", {"type": "speech", "save_dir": "wav", "rate": 150}),
    ("speech:save_dir=wav", {"type": "speech", "save_dir": "wav"}),
    ("zmq:tcp://127.0.0.1:6000,sndhwm=50", {"type": "zmq", "endpoint": "tcp://127.0.0.1:6000", "sndhwm": 50}),
    ("overlay:a,b.mp4,show=false", {"type": "overlay", "path": "a,b.mp4", "show": False}),
    ("speech,template=Now {label}.", {"type": "speech", "template": "Now {label}."}),
])
def test_sink_specs(spec, expected):
    assert parse_sink_spec(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("fax", "unknown sink 'fax'"),
    ("console:x", "sink 'console' takes no argument, only options"),
    ("speech,type=zmq", "the type is the name before ':'"),
])
def test_bad_sink_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_sink_spec(spec)


def test_sink_flag_keeps_the_config_files_options_for_its_type(caplog):
    configured = [{"type": "speech", "template": "Now {label}.", "rate": 160}, {"type": "console"}]
    with caplog.at_level(logging.INFO, logger="realtime.sinks"):
        sinks = sinks_from_specs(["speech,rate=120", "jsonl:o.jsonl"], configured)
    assert sinks == [{"type": "speech", "template": "Now {label}.", "rate": 120},
                     {"type": "jsonl", "path": "o.jsonl"}]
    assert "console will not run" in caplog.text                     # never silently dropped


def test_cli_sink_and_set_combine_on_a_preset():
    r = realtime("run", "--config", "accessibility", "--sink", "speech,save_dir=/tmp/w", "--sink", "jsonl:-",
                 "--set", "sinks.0.speak=false", "--set", "sinks.1.path=/tmp/x.jsonl", "--print-config")
    assert r.returncode == 0, r.stderr
    assert "save_dir: /tmp/w" in r.stdout and "speak: false" in r.stdout and "path: /tmp/x.jsonl" in r.stdout
    assert "template: Now {label}." in r.stdout
    assert "console will not run" in r.stderr


@pytest.mark.parametrize("endpoint,ok", [
    ("tcp://127.0.0.1:5556", True), ("tcp://*:5556", True), ("tcp://127.0.0.1:*", True),
    ("tcp://[::1]:6000", True), ("ipc:///tmp/feed.sock", True), ("inproc://feed", True),
    ("tcp://127.0.0.1:99999", False), ("tcp://127.0.0.1:0", False), ("tcp://127.0.0.1", False),
    ("tcp://:5556", False), ("udp://127.0.0.1:5556", False), ("127.0.0.1:5556", False), ("ipc://", False),
])
def test_bind_endpoints(endpoint, ok):
    if ok:
        assert check_bind_endpoint(endpoint) == endpoint
    else:
        with pytest.raises(ValueError):
            check_bind_endpoint(endpoint)


def test_cli_refuses_an_impossible_port_as_a_configuration_error():
    r = realtime("run", "--sink", "zmq:tcp://127.0.0.1:99999", "--print-config")
    assert r.returncode == 2, r.stderr
    assert "sinks.0.endpoint: port '99999' is not 1-65535" in r.stderr and "Traceback" not in r.stderr


def test_jsonl_creates_a_missing_folder_and_says_so(tmp_path, caplog):
    target = tmp_path / "new" / "deeper" / "events.jsonl"
    sink = JsonlSink(str(target))
    with caplog.at_level(logging.INFO, logger="realtime.sinks.jsonl"):
        sink.open()
    sink.write({"type": "x"})
    sink.close()
    assert json.loads(target.read_text()) == {"type": "x"}
    assert f"created the folder {target.parent}" in caplog.text


@pytest.mark.slow
def test_headless_user_gets_spoken_announcements_as_wav_files_from_the_command_line(tmp_path):
    """The accessibility preset's speech sink, its save_dir set with --set, on a real clip."""
    clip = SHARED_CLIPS / "abseiling.mp4"
    if not clip.is_file():
        pytest.skip(f"the shared clips are not at {SHARED_CLIPS}")
    i3d_weights_or_skip()
    wavs = tmp_path / "wavs"
    r = realtime("run", "--config", "accessibility", "--source", str(clip), "--set", "source.pace=fast",
                 "--set", f"sinks.0.save_dir={wavs}", "--set", "sinks.0.speak=false", timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    files = sorted(Path(wavs).glob("*.wav"))
    assert files, r.stderr[-3000:]
    with wave.open(str(files[0])) as w:
        assert w.getnframes() > w.getframerate() * 0.3      # real speech, not an empty file
    assert "abseiling" in files[0].name.lower() or "abseiling" in r.stdout.lower()
