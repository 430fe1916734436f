"""``realtime eval``: data sets, label matching, skipped clips, metrics, report files.

The fast tests use a ScriptedClassifier that names the colour of generated videos;
the last test runs the real I3D model on the shared clips.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import pytest

from conftest import SHARED_CLIPS, i3d_weights_or_skip, write_video
from support.fakes import ScriptedClassifier
from realtime.tools.evaluate import run as evaluate_module
from realtime.config import load_config
from realtime.core.errors import ConfigError, SourceError
from realtime.cli.eval import add_parser, cmd_eval
from realtime.tools.evaluate import (SharedClassifier, draw_confusion, evaluate, load_dataset, match_labels,
                               normalize_label, read_label_map, write_report)

MODEL_LABELS = ["red", "green", "blue", "yellow"]
PROTOTYPES = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.float64)  # RGB


def colour_script(clips: np.ndarray) -> np.ndarray:
    """Probabilities from the clip's mean colour: softmax of minus the distance to each prototype."""
    mean = clips.reshape(len(clips), -1, 3).mean(axis=1)                      # (B, 3) RGB
    dist = np.linalg.norm(mean[:, None, :] - PROTOTYPES[None], axis=2)       # (B, 4)
    logits = -dist / 40.0
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class CountingClassifier(ScriptedClassifier):
    """A colour-naming ScriptedClassifier that counts its loads."""

    def __init__(self, labels: Sequence[str] = MODEL_LABELS) -> None:
        super().__init__(labels=labels, num_frames=8, window_seconds=0.5, script=colour_script)
        self.loads = 0

    def load(self) -> None:
        self.loads += 1
        super().load()


def colour_clip(path: Path, rgb: tuple[int, int, int], frames: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames=frames, fps=30.0, size=(64, 48), color_of=lambda i: rgb[::-1])


# class folder -> [(file name, RGB colour)]; the comment says what the colour model predicts
COLOUR_SET = {
    "Blue": [("b1.mp4", (0, 0, 250)), ("b2.mp4", (10, 10, 240))],             # blue, blue
    "green_": [("g1.mp4", (0, 250, 0)), ("g2.mp4", (200, 40, 0))],            # green, red
    "red": [("r1.mp4", (250, 0, 0)), ("r2.mp4", (240, 30, 10)),               # red, red
            ("r3.mp4", (230, 220, 0))],                                        # yellow (other)
}
EXPECTED_TRUE = ["Blue", "Blue", "green_", "green_", "red", "red", "red"]
EXPECTED_PRED = ["Blue", "Blue", "green_", "red", "red", "red", "yellow"]


@pytest.fixture(scope="module")
def colour_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    for folder, clips in COLOUR_SET.items():
        for name, rgb in clips:
            colour_clip(root / folder / name, rgb)
    return root


@pytest.fixture
def config():
    return load_config(None, [])


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="realtime")
    add_parser(parser.add_subparsers())
    return parser.parse_args(["eval", *argv])


# --------------------------------------------------------------------------- data sets
def test_folder_data_set(tmp_path: Path) -> None:
    colour_clip(tmp_path / "jumping" / "a.MP4", (1, 2, 3), frames=2)
    colour_clip(tmp_path / "jumping" / "nested" / "b.mp4", (1, 2, 3), frames=2)
    colour_clip(tmp_path / "waving" / "c.mkv", (1, 2, 3), frames=2)   # an mp4 stream; the name counts
    (tmp_path / "waving" / "notes.txt").write_text("not a clip")
    (tmp_path / "empty").mkdir()
    colour_clip(tmp_path / ".hidden" / "d.mp4", (1, 2, 3), frames=2)
    colour_clip(tmp_path / "loose.mp4", (1, 2, 3), frames=2)
    ds = load_dataset(tmp_path)
    assert ds.kind == "folder" and ds.classes == ["jumping", "waving"]
    assert [(ds.display(s.path), s.label) for s in ds.samples] == [
        ("jumping/a.MP4", "jumping"), ("jumping/nested/b.mp4", "jumping"), ("waving/c.mkv", "waving")]


def test_folder_follows_symlinked_clips(tmp_path: Path) -> None:
    clip = colour_clip(tmp_path / "store" / "x.avi.mp4", (1, 2, 3), frames=2)
    (tmp_path / "data" / "arm_wrestling").mkdir(parents=True)
    (tmp_path / "data" / "arm_wrestling" / "x.mp4").symlink_to(clip)
    ds = load_dataset(tmp_path / "data")
    assert [s.label for s in ds.samples] == ["arm_wrestling"]


def test_csv_data_set_with_and_without_header(tmp_path: Path) -> None:
    other = colour_clip(tmp_path / "elsewhere" / "z.mp4", (1, 2, 3), frames=2)
    sets = tmp_path / "sets"
    sets.mkdir()
    body = f'clips/a.mp4,waving\n\n"clips/b c.mp4", arm wrestling \n{other},waving\n'
    (sets / "with.csv").write_text("path,label\n" + body)
    (sets / "without.csv").write_text(body)
    for name in ("with.csv", "without.csv"):
        ds = load_dataset(sets / name)
        assert ds.kind == "csv" and ds.root == sets
        assert [(s.path, s.label) for s in ds.samples] == [
            (sets / "clips" / "a.mp4", "waving"), (sets / "clips" / "b c.mp4", "arm wrestling"),
            (other, "waving")]
        assert ds.classes == ["arm wrestling", "waving"]


@pytest.mark.parametrize(("text", "message"), [
    ("a.mp4,waving,extra\n", "line 1"),
    ("path,label\na.mp4\n", "line 2"),
    ("path,label\n", "no clips"),
])
def test_bad_csv_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "set.csv").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_dataset(tmp_path / "set.csv")


def test_bad_data_argument(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no video clips"):
        load_dataset(tmp_path)
    with pytest.raises(ConfigError, match="is a video file"):
        load_dataset(colour_clip(tmp_path / "a.mp4", (1, 2, 3), frames=2))


# --------------------------------------------------------------------------- labels
KINETICS_LIKE = ["abseiling", "arm wrestling", "shooting basketball", "flipping pancake", "air drumming"]


def test_labels_match_ignoring_case_spaces_underscores_hyphens() -> None:
    assert normalize_label(" Arm_wrestling-X ") == "armwrestlingx"
    got = match_labels(["Arm_Wrestling", "shooting-basketball", "ABSEILING", "flipping pancake"],
                       KINETICS_LIKE, "m")
    assert got == {"Arm_Wrestling": "arm wrestling", "shooting-basketball": "shooting basketball",
                   "ABSEILING": "abseiling", "flipping pancake": "flipping pancake"}


def test_unknown_label_error_lists_close_matches() -> None:
    with pytest.raises(ConfigError) as info:
        match_labels(["arm_wrestlin", "abseiling", "qqq"], KINETICS_LIKE, "i3d-kinetics400")
    message = str(info.value)
    assert "'arm_wrestlin'" in message and "'arm wrestling'" in message
    assert "'qqq' (no close match)" in message and "'abseiling'" not in message
    assert "2 labels" in message and "--labels-map" in message and "\n" not in message


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_labels_map_file(tmp_path: Path, fmt: str) -> None:
    mapping = {"wrestle": "arm wrestling", "Hoops": "Shooting_Basketball"}
    path = tmp_path / f"map.{fmt}"
    path.write_text(json.dumps(mapping) if fmt == "json"
                    else "wrestle: arm wrestling\nHoops: Shooting_Basketball\n")
    assert read_label_map(path) == mapping
    got = match_labels(["wrestle", "hoops", "abseiling"], KINETICS_LIKE, "m", read_label_map(path))
    assert got == {"wrestle": "arm wrestling", "hoops": "shooting basketball", "abseiling": "abseiling"}


def test_bad_labels_maps(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_label_map(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_label_map(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match=r"'wrestle' \(mapped to 'arm wrestlin'\) \(close: 'arm wrestling'"):
        match_labels(["wrestle"], KINETICS_LIKE, "m", {"wrestle": "arm wrestlin"})
    with pytest.raises(ConfigError, match="both match"):
        match_labels(["arm_wrestling", "arm wrestling"], KINETICS_LIKE, "m")


def test_unknown_label_fails_before_any_clip(tmp_path: Path, config) -> None:
    colour_clip(tmp_path / "red" / "a.mp4", (250, 0, 0))
    colour_clip(tmp_path / "purpel" / "b.mp4", (250, 0, 250))
    clf = CountingClassifier(labels=[*MODEL_LABELS, "purple"])
    with pytest.raises(ConfigError, match="'purpel' .*close: 'purple'"):
        evaluate(tmp_path, config, classifier=clf, progress=False)
    assert clf.count == 0


# --------------------------------------------------------------------------- running
def test_scripted_evaluation_metrics(colour_set: Path, config) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    clf = CountingClassifier()
    report = evaluate(colour_set, config, classifier=clf, k=2, progress=False)
    assert clf.loads == 1 and clf.count >= 7            # loaded once, used for every clip
    assert report.model == "scripted" and not report.skipped
    assert [c.label for c in report.clips] == EXPECTED_TRUE
    assert [c.predicted for c in report.clips] == EXPECTED_PRED
    assert report.label_map == {"Blue": "blue", "green_": "green", "red": "red"}
    m = report.metrics
    labels = ["Blue", "green_", "red"]
    assert m.labels == labels and m.accuracy == pytest.approx(5 / 7)
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
        EXPECTED_TRUE, EXPECTED_PRED, labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(m.precision, p)
    np.testing.assert_allclose(m.recall, r)
    np.testing.assert_allclose(m.f1, f)
    assert m.support.tolist() == [2, 2, 3]
    assert m.macro["f1"] == pytest.approx(sklearn_metrics.f1_score(
        EXPECTED_TRUE, EXPECTED_PRED, labels=labels, average="macro", zero_division=0))
    assert m.confusion.tolist() == [[2, 0, 0, 0], [0, 1, 1, 0], [0, 0, 2, 1]]
    # top-2: the yellowish red clip has red second; the reddish green clip has yellow second
    assert [c.in_top_k for c in report.clips] == [True, True, True, False, True, True, True]
    assert report.top_k_accuracy == pytest.approx(6 / 7)
    for c in report.clips:
        assert c.in_top_k == (c.model_label in [t["label"] for t in c.top_k]) and len(c.top_k) == 2
        assert c.score >= c.true_score and c.correct == (c.score == c.true_score)
    # the worst clips: the two wrong ones first, by the true label's probability, ascending
    worst = report.worst()
    assert [c.correct for c in worst] == [False, False, True, True, True, True, True]
    assert worst[0].true_score <= worst[1].true_score
    assert [c.true_score for c in worst[2:]] == sorted(c.true_score for c in worst[2:])
    table = report.format_table(worst=3)
    assert "accuracy 0.714" in table and "top-2 accuracy 0.857" in table
    listed = table.split("worst-classified clips")[1].strip().splitlines()[1:]
    assert len(listed) == 3 and all("WRONG" in line for line in listed[:2]) and "ok" in listed[2]
    assert {listed[0].split()[1], listed[1].split()[1]} == {"green_/g2.mp4:", "red/r3.mp4:"}


def test_report_files(colour_set: Path, config, tmp_path: Path) -> None:
    report = evaluate(colour_set, config, classifier=CountingClassifier(), progress=False)
    json_path, png_path = write_report(report, tmp_path / "out" / "deeper")
    data = json.loads(json_path.read_text())
    assert data["accuracy"] == pytest.approx(5 / 7)
    assert set(data["macro"]) == {"precision", "recall", "f1"}
    assert set(data["per_class"]) == {"Blue", "green_", "red"}
    assert data["per_class"]["red"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3),
                                        "f1": pytest.approx(2 / 3), "support": 3}
    assert data["confusion_matrix"]["labels"] == ["Blue", "green_", "red"]
    assert data["confusion_matrix"]["columns"][-1] == "other"
    assert data["confusion_matrix"]["matrix"] == [[2, 0, 0, 0], [0, 1, 1, 0], [0, 0, 2, 1]]
    assert data["model"] == "scripted" and data["skipped"] == [] and data["k"] == 4
    assert 0 <= data["top_k_accuracy"] <= 1
    clip = data["clips"][0]
    assert {"path", "label", "predicted", "score", "true_score", "correct", "top_k"} <= set(clip)
    assert Path(clip["path"]).is_file()
    image = cv2.imdecode(np.frombuffer(png_path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 10                      # something is drawn


def test_corrupt_clip_is_skipped_and_reported(colour_set: Path, config, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture, capsys) -> None:
    data = tmp_path / "data"
    for folder in COLOUR_SET:
        (data / folder).mkdir(parents=True)
        for clip in (colour_set / folder).iterdir():
            (data / folder / clip.name).symlink_to(clip)
    (data / "red" / "broken.mp4").write_text("this is not a video")
    clf = CountingClassifier()
    with caplog.at_level(logging.WARNING, logger="realtime.tools.evaluate"):
        report = evaluate(data, config, classifier=clf, progress=False)
    assert [s.path.name for s in report.skipped] == ["broken.mp4"]
    assert "cannot open video file" in report.skipped[0].reason and report.skipped[0].label == "red"
    assert any("skipped" in r.message and "broken.mp4" in r.message for r in caplog.records)
    assert len(report.clips) == 7 and report.metrics.accuracy == pytest.approx(5 / 7)
    assert clf.loads == 1
    skipped = report.to_json()["skipped"]
    assert skipped == [{"path": str(data / "red" / "broken.mp4"), "label": "red",
                        "reason": report.skipped[0].reason}]
    assert "skipped clips (1)" in report.format_table() and "red/broken.mp4" in report.format_table()


def test_every_clip_unreadable_is_an_error(tmp_path: Path, config) -> None:
    (tmp_path / "red").mkdir()
    (tmp_path / "red" / "a.mp4").write_text("text")
    with pytest.raises(SourceError, match="none of the 1 clips"):
        evaluate(tmp_path, config, classifier=CountingClassifier(), progress=False)


def test_shared_classifier_loads_once_and_stays_open() -> None:
    class Closing(CountingClassifier):
        closed = 0

        def close(self) -> None:
            self.closed += 1

    inner = Closing()
    shared = SharedClassifier(inner)
    for _ in range(3):
        shared.load()
        shared.close()
    assert inner.loads == 1 and inner.closed == 0
    assert shared.labels == MODEL_LABELS and shared.num_frames == 8 and shared.script is colour_script
    shared.release()
    assert inner.closed == 1


def test_confusion_png_for_many_classes() -> None:
    n = 50
    labels = [f"class number {i} with a long name" for i in range(n)]
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (n, n + 1))
    image = draw_confusion(matrix, labels, [*labels, "other"], title="fifty")
    assert image.dtype == np.uint8 and image.ndim == 3
    assert 900 < image.shape[1] < 2000 and 900 < image.shape[0] < 2000


# --------------------------------------------------------------------------- the command
@pytest.fixture
def scripted_model(monkeypatch: pytest.MonkeyPatch) -> list[CountingClassifier]:
    """Make ``classifier_for`` (as evaluate calls it) return colour classifiers."""
    made: list[CountingClassifier] = []

    def create(model, **_kw) -> CountingClassifier:
        made.append(CountingClassifier())
        return made[-1]

    monkeypatch.setattr(evaluate_module, "classifier_for", create)
    return made


def test_cmd_eval_table_json_and_report(colour_set: Path, tmp_path: Path, scripted_model,
                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    assert cmd_eval(parse(str(colour_set), "--model", "whatever", "--report", str(out),
                          "--no-progress", "--top-k", "2")) == 0
    text = capsys.readouterr().out
    assert "accuracy 0.714" in text and "top-2 accuracy" in text and "macro avg" in text
    assert "worst-classified clips" in text and (out / "report.json").is_file()
    assert (out / "confusion.png").is_file() and len(scripted_model) == 1
    assert cmd_eval(parse(str(colour_set), "--json", "--no-progress")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["accuracy"] == pytest.approx(5 / 7) and data["k"] == 4


def test_cmd_eval_csv_with_labels_map(colour_set: Path, tmp_path: Path, scripted_model,
                                      capsys: pytest.CaptureFixture) -> None:
    rows = ["path,label", f"{colour_set / 'Blue' / 'b1.mp4'},azure",
            f"{colour_set / 'red' / 'r1.mp4'},crimson", f"{colour_set / 'red' / 'r3.mp4'},crimson"]
    (tmp_path / "set.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "map.json").write_text('{"azure": "blue", "crimson": "red"}')
    assert cmd_eval(parse(str(tmp_path / "set.csv"), "--labels-map", str(tmp_path / "map.json"),
                          "--no-progress", "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["accuracy"] == pytest.approx(2 / 3)
    assert data["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 1, 1]]   # azure, crimson | other
    assert [c["predicted"] for c in data["clips"]] == ["azure", "crimson", "yellow"]


def test_prediction_outside_the_classes_is_other_even_if_named_like_a_class(
        colour_set: Path, tmp_path: Path, config) -> None:
    # "yellow" is a data set class mapped to the model's "red"; the model's own "yellow" is no class
    rows = [f"{colour_set / 'red' / 'r3.mp4'},yellow", f"{colour_set / 'red' / 'r1.mp4'},yellow",
            f"{colour_set / 'Blue' / 'b1.mp4'},blue"]
    (tmp_path / "set.csv").write_text("\n".join(rows) + "\n")
    report = evaluate(tmp_path / "set.csv", config, classifier=CountingClassifier(),
                      labels_map=_write(tmp_path / "map.yaml", "yellow: red\n"), progress=False)
    yellowish = report.clips[0]
    assert yellowish.path.name == "r3.mp4" and yellowish.predicted == "yellow"
    assert yellowish.predicted_class is None and not yellowish.correct
    assert report.metrics.accuracy == pytest.approx(2 / 3)
    assert report.metrics.confusion.tolist() == [[1, 0, 0], [0, 1, 1]]       # blue, yellow | other
    assert "predicted yellow [other]" in report.format_table()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("argv", [["--top-k", "0"], ["--stride", "0"], ["--worst", "-1"],
                                  ["--set", "nonsense.key=1"]])
def test_bad_arguments_exit_2(colour_set: Path, scripted_model, argv: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        cmd_eval(parse(str(colour_set), *argv))
    assert info.value.exit_code == 2
    assert not scripted_model


def test_missing_data_exits_2(tmp_path: Path, scripted_model) -> None:
    with pytest.raises(ConfigError, match="not found") as info:
        cmd_eval(parse(str(tmp_path / "nope"), "--no-progress"))
    assert info.value.exit_code == 2


# --------------------------------------------------------------------------- the real model
SHARED_NAMES = {"abseiling.mp4": "abseiling", "arm_wrestling.mp4": "arm_wrestling",
                "flipping_pancake.mkv": "flipping_pancake",
                "shooting_basketball.avi": "shooting_basketball"}


def _i3d_weights_or_skip() -> Optional[Path]:
    if not all((SHARED_CLIPS / name).is_file() for name in SHARED_NAMES):
        pytest.skip(f"the shared clips are not at {SHARED_CLIPS}")
    return i3d_weights_or_skip()


@pytest.mark.slow
def test_real_eval_i3d_on_shared_clips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """I3D classifies each of the four shared clips right (about 20 s with --stride 2 on 2 CPUs)."""
    _i3d_weights_or_skip()
    data = tmp_path / "clips"
    for name, folder in SHARED_NAMES.items():
        (data / folder).mkdir(parents=True)
        (data / folder / name).symlink_to(SHARED_CLIPS / name)
    out = tmp_path / "report"
    started = time.monotonic()
    rc = cmd_eval(parse(str(data), "--model", "i3d-kinetics400", "--report", str(out),
                        "--stride", "2.0", "--no-progress"))
    elapsed = time.monotonic() - started
    text = capsys.readouterr().out
    print(f"real eval: {elapsed:.1f} s")
    assert rc == 0, text
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"] == 1.0, text
    assert report["model"] == "i3d-kinetics400" and report["skipped"] == []
    assert report["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert report["confusion_matrix"]["matrix"] == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0],
                                                    [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
    assert report["label_map"]["arm_wrestling"] == "arm wrestling"
    assert {c["predicted"] for c in report["clips"]} == set(SHARED_NAMES.values())
    image = cv2.imdecode(np.frombuffer((out / "confusion.png").read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and min(image.shape[:2]) > 200
    assert "accuracy 1.000" in text
