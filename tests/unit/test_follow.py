"""`make services` shows both services' log lines live, prefixed with their names."""

from __future__ import annotations

import io

import pytest
from obs_tools.localstack.follow import LogFollower, log_offsets

from tests.support.polling import poll_until


@pytest.fixture
def files(tmp_path):
    return {"frontend": tmp_path / "frontend.log", "backend": tmp_path / "backend.log"}


def test_new_lines_of_each_file_are_printed_with_the_program_name(files):
    files["frontend"].write_text("from an earlier run\n")
    out = io.StringIO()
    follower = LogFollower(files, out, offsets=log_offsets(files), interval=0.05)
    follower.start()
    try:
        with open(files["frontend"], "a") as f:
            f.write('{"message": "GET /items 200"}\n')
        # The backend's file does not exist yet when following starts.
        files["backend"].write_text('{"message": "GET /api/items 200"}\npartial')
        poll_until(lambda: out.getvalue().count("\n") == 2, "two prefixed lines", timeout=5)
    finally:
        follower.stop()
    assert sorted(out.getvalue().splitlines()) == [
        'backend  | {"message": "GET /api/items 200"}',
        'frontend | {"message": "GET /items 200"}',
    ]


def test_a_line_is_printed_once_complete_and_after_a_rotation(files):
    out = io.StringIO()
    follower = LogFollower(files, out, offsets=log_offsets(files))
    files["backend"].write_text("first ha")
    follower.poll()
    assert out.getvalue() == ""
    with open(files["backend"], "a") as f:
        f.write("lf\n")
    follower.poll()
    assert out.getvalue() == "backend  | first half\n"
    # supervisord rotates by renaming the file and starting a new one.
    files["backend"].rename(files["backend"].with_suffix(".log.1"))
    files["backend"].write_text("after rotation\n")
    follower.poll()
    assert out.getvalue().splitlines()[-1] == "backend  | after rotation"
