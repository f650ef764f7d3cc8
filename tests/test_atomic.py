import pytest

from chatbot.atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from chatbot.errors import DataError


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "file.txt"
    atomic_write_text(path, "one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    atomic_write_text(path, "good")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(path, "new content")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_directory_appears_only_when_complete(tmp_path):
    final = tmp_path / "out"
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_crash_inside_the_block_leaves_nothing(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_existing_directory_is_refused_without_overwrite(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    with pytest.raises(DataError, match=r"out: already exists"), atomic_directory(final):
        pass


def test_overwrite_replaces_only_after_success(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("crash")
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    with atomic_directory(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_finished_directory_is_readable_by_others(tmp_path):
    with atomic_directory(tmp_path / "bundle") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "bundle").stat().st_mode & 0o777 == 0o755


def test_a_written_file_is_readable_by_others_and_keeps_a_chosen_mode(tmp_path):
    path = tmp_path / "tokenizer.model"
    atomic_write_bytes(path, b"one")
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o640)
    atomic_write_bytes(path, b"two")
    assert path.stat().st_mode & 0o777 == 0o640
