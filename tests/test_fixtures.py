"""``python tests/fixtures/make_fixtures.py`` rewrites the committed fixture byte for byte: the
Julia tests and the Python tests read the same files, so one that drifted must not pass unseen."""

from __future__ import annotations

from fixtures import make_fixtures


def test_make_fixtures_writes_exactly_the_committed_files(tmp_path):
    make_fixtures.main(tmp_path)
    for name in make_fixtures.FILES:
        written, committed = tmp_path / name, make_fixtures.HERE / name
        assert written.read_bytes() == committed.read_bytes(), \
            f"{name}: make_fixtures.py writes other bytes than the committed file"

