import pytest

from news_probes.io import staged_directory


def test_staged_directory_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / "stale.txt").write_text("from a killed run")
    with staged_directory(out) as staging:
        assert staging == tmp_path / "out.partial" and not (staging / "stale.txt").exists()
        (staging / "new.txt").write_text("new")
        assert (out / "old.txt").read_text() == "old"   # untouched until the block succeeds
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_directory_keeps_the_earlier_output_when_the_block_fails(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="fit failed"):
        with staged_directory(out) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("fit failed")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_directory_creates_a_new_output(tmp_path):
    with staged_directory(tmp_path / "a" / "out") as staging:
        (staging / "x").write_text("x")
    assert (tmp_path / "a" / "out" / "x").read_text() == "x"
