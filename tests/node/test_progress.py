"""The ingest progress line: drawn only on a terminal, counts bytes from worker threads."""

from __future__ import annotations

import io
import threading

from node.progress import Progress


def test_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress("ingest", stream)
    progress.add_bytes(10)
    progress.add_item()
    progress.finish()
    assert stream.getvalue() == ""


def test_counts_from_many_threads_and_draws() -> None:
    stream = io.StringIO()
    progress = Progress("ingest", stream, enabled=True)

    def work() -> None:
        for _ in range(1000):
            progress.add_bytes(1024)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    progress.add_item()
    progress.finish()
    assert progress.bytes == 4 * 1000 * 1024
    assert "1 resources, 3.9 MiB" in stream.getvalue()
