"""``realtime index --ray``: a real Ray cluster on this machine (a head and two worker nodes started
with ``ray start``), the same records as the local engine, and a node lost mid-run."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import REPO, realtime, write_video
from realtime.config import load_config
from realtime.gallery.index import index_gallery
from realtime.gallery.store import GalleryStore
from support.gallery_rows import gallery_rows

pytest.importorskip("ray", reason="Ray is not installed (scripts/setup.sh --test installs the ray extra)")
from support.ray_cluster import RayCluster  # noqa: E402

pytestmark = pytest.mark.slow

# the tiny random model is never sure: a lower bar makes segments to compare
SETTINGS = ["--stride", "0.5", "--set", "smoothing.enter=0.1", "--set", "smoothing.exit=0.05"]


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster(workers=2, cpus_per_worker=1)
    try:
        yield c.start()
    finally:
        c.stop()


def _gallery(root, n, frames, size):
    root.mkdir(parents=True)
    for i in range(n):
        write_video(root / f"v{i:02d}.mp4", frames=frames + 7 * i, size=size,
                    color_of=lambda k, i=i: ((k * 37 + 50 * i) % 256, (k * 11 + 60) % 256, (255 - k * 5 - i) % 256))
    (root / "broken.mp4").write_bytes(b"\x00junk" * 100)


def _local(gallery, db, model):
    config = load_config(overrides=[f"model.name={model}", "model.device=cpu", "smoothing.enter=0.1",
                                    "smoothing.exit=0.05"])
    with GalleryStore(db) as store:
        s = index_gallery(str(gallery), store, config, stride=0.5, progress=False)
    assert s.failed == 1


def _same(a, b):
    assert a["videos"] == b["videos"] and a["labels"] == b["labels"]
    assert a["segments"] and a["segments"] == b["segments"]


def test_ray_cluster_indexes_what_the_local_engine_does(cluster, tiny_model, tmp_path):
    g = tmp_path / "g"
    _gallery(g, 4, 60, (64, 48))
    _local(g, tmp_path / "local.db", tiny_model)
    r = realtime("index", str(g), "--db", str(tmp_path / "ray.db"), "--ray", cluster.address, "--model",
                 str(tiny_model), "--device", "cpu", "--no-progress", *SETTINGS, timeout=300, env=cluster.driver_env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "5 videos: 4 indexed, 0 unchanged, 1 failed" in r.stdout, r.stdout
    _same(gallery_rows(tmp_path / "local.db"), gallery_rows(tmp_path / "ray.db"))
    # incremental as the local engine: nothing is sent to the cluster again
    r = realtime("index", str(g), "--db", str(tmp_path / "ray.db"), "--ray", cluster.address, "--model",
                 str(tiny_model), "--device", "cpu", "--no-progress", *SETTINGS, timeout=300, env=cluster.driver_env)
    assert "5 videos: 0 indexed, 5 unchanged, 0 failed" in r.stdout, r.stdout + r.stderr[-2000:]


def test_a_node_lost_mid_run_loses_no_video_and_writes_none_twice(cluster, tiny_model, tmp_path):
    g = tmp_path / "g"
    _gallery(g, 16, 300, (320, 240))
    db = tmp_path / "ray.db"
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "index", str(g), "--db", str(db), "--ray",
                             cluster.address, "--model", str(tiny_model), "--device", "cpu", "--no-progress",
                             *SETTINGS], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **cluster.driver_env})
    try:
        # Kill a node once the first videos are written: both replicas have work then.
        deadline = time.monotonic() + 240
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(db) as con:
                        done = con.execute("SELECT count(*) FROM videos").fetchone()[0]
                except sqlite3.OperationalError:      # the schema is being created
                    done = 0
            if done:
                break
            time.sleep(0.05)
        assert done and proc.poll() is None, "the run ended before a node could be killed"
        assert cluster.kill_node(1) >= 2
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "a replica was lost" in err, err[-3000:]          # the kill hit videos in flight
    assert "17 videos: 16 indexed, 0 unchanged, 1 failed" in out, out   # each written once
    ray_rows = gallery_rows(db)
    assert len(ray_rows["videos"]) == 17 and sum(s == "ok" for _, s, _ in ray_rows["videos"]) == 16
    _local(g, tmp_path / "local.db", tiny_model)
    _same(gallery_rows(tmp_path / "local.db"), ray_rows)


def test_an_address_where_no_cluster_answers_fails_at_once_saying_so(tiny_model, tmp_path):
    g = tmp_path / "g"
    _gallery(g, 1, 30, (64, 48))
    started = time.monotonic()
    r = realtime("index", str(g), "--db", str(tmp_path / "g.db"), "--ray", "127.0.0.1:1", "--model", str(tiny_model))
    assert r.returncode != 0 and time.monotonic() - started < 60
    assert "--ray 127.0.0.1:1: cannot reach a Ray cluster there" in r.stderr and "Traceback" not in r.stderr
