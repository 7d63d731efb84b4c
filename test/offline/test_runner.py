"""The offline loop: time pairing, progress line, and outputs that are all or nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from samfusion.cli import main
from samfusion.errors import ConfigError
from samfusion.offline.runner import Progress, RunOptions, atomic_output, plan_pairs
from samfusion.pipeline.perception import PerceptionPipeline


def test_plan_pairs_nearest_within_skew_with_offsets() -> None:
    # binary-exact stamps, so distances on the skew boundary are exact
    images = {"a": [0.0, 0.125, 0.25, 0.375], "b": [1.0, 1.1875, 1.375]}
    clouds = [0.03125, 0.1875, 0.34375, 0.75]
    # a: 0.1875 is 0.0625 from both 0.125 and 0.25 (a tie, the earlier wins); 0.75 has nothing in range
    assert plan_pairs(images, clouds, 0.0625) == [{"a": 0}, {"a": 1}, {"a": 3}, {}]
    # b's stamps are 1 s late (camera minus LiDAR = +1 s): with that offset it pairs like a
    assert plan_pairs(images, clouds, 0.0625, {"b": 1.0}) == [{"a": 0, "b": 0}, {"a": 1, "b": 1},
                                                               {"a": 3, "b": 2}, {}]
    assert plan_pairs(images, clouds, 0.0, {"b": 1.0}) == [{}, {"b": 1}, {}, {}]
    assert plan_pairs(images, clouds, 0.03, {"b": 1.0}) == [{}, {"b": 1}, {}, {}]
    assert plan_pairs({"a": []}, clouds, 1.0) == [{}, {}, {}, {}]


def test_plan_pairs_tie_goes_to_the_earlier_image_and_order_is_kept() -> None:
    # stamps out of order in the input: indices refer to input order
    assert plan_pairs({"a": [0.2, 0.0, 0.1]}, [0.05, 0.2], 0.05) == [{"a": 1}, {"a": 0}]


def test_progress_line_reports_frames_per_second() -> None:
    stream = io.StringIO()
    progress = Progress("bag", 4, stream=stream)
    for _ in range(4):
        progress.update(1, frames=1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5  # not a terminal: one line per tenth of the work, and a final one
    assert lines[-1].startswith("bag [########################] 100% 4/4 msgs") and "frames/s" in lines[-1]
    quiet = io.StringIO()
    Progress("bag", 4, enabled=False, stream=quiet).close()
    assert quiet.getvalue() == ""


def test_atomic_output_renames_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out" / "result"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as staged:
            staged.mkdir()
            (staged / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert list((tmp_path / "out").iterdir()) == []
    with atomic_output(final) as staged:
        staged.mkdir()
        (staged / "done.txt").write_text("one")
    with atomic_output(final) as staged:
        staged.mkdir()
        (staged / "done.txt").write_text("two")
    assert (final / "done.txt").read_text() == "two"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["result"]


def test_stale_staging_of_a_dead_run_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".result.partial-999999999-abc"
    stale.mkdir()
    live = tmp_path / ".result.partial-1-abc"  # pid 1 is alive: another run may own it
    live.mkdir()
    with atomic_output(tmp_path / "result") as staged:
        staged.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".result.partial-1-abc", "result"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_bag_run_leaves_no_output(tmp_path: Path, kitti_bags, monkeypatch, error) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "k12_db3_samfusion").mkdir()  # a finished output of an earlier run
    (out / "k12_db3_samfusion" / "marker").write_text("earlier")
    calls = []
    original = PerceptionPipeline.label_cloud

    def failing(self, xyz, segs):
        calls.append(1)
        if len(calls) == 2:  # the second of the bag's two clouds
            raise error("interrupted")
        return original(self, xyz, segs)

    monkeypatch.setattr(PerceptionPipeline, "label_cloud", failing)
    args = ["process", str(kitti_bags["k12_db3"]), str(kitti_bags["k0_db3"]), "--out", str(out), "--no-progress"]
    if error is KeyboardInterrupt:
        assert main(args) == 130
    else:
        with pytest.raises(RuntimeError, match="interrupted"):
            main(args)
    assert len(calls) == 2
    # the earlier output is untouched, nothing else exists: no new output, no staging directory
    assert sorted(p.name for p in out.iterdir()) == ["k12_db3_samfusion"]
    assert [p.name for p in (out / "k12_db3_samfusion").iterdir()] == ["marker"]


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, kitti_bags, capsys) -> None:
    bag = str(kitti_bags["k0_db3"])
    cases = [
        (["--lidar", "/nope"], "LiDAR topic /nope is not in the bag"),
        (["--time-offset", "cam=1"], "not inputs; cameras: ['camera']"),
        (["--time-offset", "camera=soon"], "is not a number"),
        (["--box", "ghost:1,2,3,4"], "targets camera 'ghost'"),
        (["--max-skew", "-1"], "max_skew_s -1.0 must be in [0, 10]"),
        ([str(kitti_bags["k12_db3"]), "--output", str(tmp_path / "x")], "--output names one output"),
    ]
    for extra, message in cases:
        assert main(["process", bag, *extra, "--out", str(tmp_path), "--no-progress"]) == 2
        assert message in capsys.readouterr().err
    assert main(["process", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "is not a bag, a KITTI folder or a folder of images" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="must start with '/'"):
        RunOptions(output_prefix="relative").validate()
