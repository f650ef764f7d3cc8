import errno
import os
from pathlib import Path

import tensorflow as tf

from chatbot.atomic import DiskFullError
from chatbot.errors import BundleError
from chatbot.training.checkpoints import first_line, open_manager, write_error


def test_first_line_drops_tensorflows_decorations():
    error = tf.errors.DataLossError(None, None, "{{function_node x}} bad record\nmore [Op:Restore]")
    assert first_line(error) == "bad record"
    assert first_line(ValueError("")) == "ValueError"


def test_a_full_disk_is_its_own_error_with_the_resume_hint(tmp_path: Path):
    full = write_error(tmp_path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert isinstance(full, DiskFullError) and "run again with --resume" in str(full)
    other = write_error(tmp_path, OSError(errno.EACCES, "Permission denied"))
    assert isinstance(other, BundleError) and "cannot save a checkpoint" in str(other)


def test_a_state_file_that_is_not_text_is_set_aside(tmp_path: Path, caplog):
    (tmp_path / "checkpoint").write_bytes(b"\xff\xfe\x00garbage")
    manager = open_manager(tf.train.Checkpoint(step=tf.Variable(1)), tmp_path, 2)
    assert manager.checkpoints == []
    assert (tmp_path / "checkpoint.damaged").is_file()
    assert "set it aside" in caplog.text
