"""The streams' files (providers/local/streams.py): written by difference, pruned,
read back from disk when the state is unknown, and never a path outside the
streams' directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from agc_controller.providers.local.streams import StreamFiles, UnsafeStreamKey


def files(directory: Path) -> dict[str, bytes]:
    return {
        f"{path.parent.name}/{path.name}": path.read_bytes()
        for path in sorted(directory.glob("*/*"))
    }


def test_write_then_prune_leaves_exactly_the_streams(tmp_path: Path) -> None:
    streams = StreamFiles(tmp_path)
    first = {"tcp-443/a.example.com": b"A", "tcp-443/*.example.com": b"W", "udp-53/*": b"U"}
    streams.write(first)
    streams.prune(first)
    assert files(tmp_path) == first
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in tmp_path.glob("*/*"))

    second = {"tcp-443/a.example.com": b"A2"}
    streams.write(second)
    # until prune, a configuration still being replaced may read the old files
    assert files(tmp_path) == {**first, **second}
    streams.prune(second)
    assert files(tmp_path) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tcp-443"]


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    streams = StreamFiles(tmp_path)
    streams.write({"tcp-9000/*": b"same"})
    path = tmp_path / "tcp-9000" / "*"
    inode = path.stat().st_ino
    streams.write({"tcp-9000/*": b"same"})
    # a fresh instance (a restarted controller) compares with what is on disk
    StreamFiles(tmp_path).write({"tcp-9000/*": b"same"})
    assert path.stat().st_ino == inode
    streams.write({"tcp-9000/*": b"new"})
    assert path.stat().st_ino != inode  # renamed into place, never edited


def test_a_fresh_instance_prunes_what_the_disk_holds(tmp_path: Path) -> None:
    StreamFiles(tmp_path).write({"tcp-443/old.example.com": b"x", "udp-53/*": b"y"})
    (tmp_path / "udp-53" / ".*.new").write_bytes(b"left by a crash")
    StreamFiles(tmp_path).prune({"udp-53/*": b"y"})
    assert files(tmp_path) == {"udp-53/*": b"y"}


@pytest.mark.parametrize(
    "key",
    [
        "tcp-443/../../etc/passwd",
        "tcp-443/..",
        "../tcp-443/a",
        "tcp-443/a/b",
        "tcp-443/A.example.com",
        "sctp-443/a",
        "tcp-443/",
        "tcp-443/a..b",
    ],
)
def test_a_key_that_is_not_a_stream_name_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(UnsafeStreamKey):
        StreamFiles(tmp_path).write({key: b"x"})
    assert list(tmp_path.iterdir()) == []
