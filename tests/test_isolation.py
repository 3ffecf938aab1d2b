"""Photos are checked and optimised in a helper process: its answers, its refusals, and its death."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.images import ImageRejected
from services.isolation import PhotoLimits, PreparedPhoto, check_and_optimise
from settings import PROJECT_ROOT
from tests.helpers import wait_until
from tests.test_analysis_pipeline import leaf_jpeg

LIMITS = PhotoLimits(max_bytes=5_000_000, max_width=800, max_height=600, target_bytes=100_000, quality=70)


def crash(data: bytes, limits: PhotoLimits) -> PreparedPhoto:
    """A decoder that takes its process down (a segfault in a codec, say)."""
    os._exit(139)


def helper_pid(data: bytes, limits: PhotoLimits) -> tuple[str, str]:
    return "corrupt", str(os.getpid())


def test_a_photo_is_prepared_in_another_process():
    prepared = check_and_optimise(leaf_jpeg(), LIMITS)
    assert prepared.info.format == "JPEG"
    assert prepared.small.data[:2] == b"\xff\xd8" and prepared.small.width <= 800
    with pytest.raises(ImageRejected) as refused:
        check_and_optimise(b"x", LIMITS, run=helper_pid)
    assert refused.value.detail != str(os.getpid())


def test_a_refusal_in_the_helper_is_the_same_refusal_here():
    with pytest.raises(ImageRejected) as refused:
        check_and_optimise(b"GIF89a" + b"\0" * 100, LIMITS)
    assert refused.value.reason == "unsupported_format"


def test_a_photo_that_kills_the_helper_is_refused_and_the_next_one_gets_a_new_helper():
    with pytest.raises(ImageRejected) as refused:
        check_and_optimise(leaf_jpeg(), LIMITS, run=crash)
    assert refused.value.reason == "corrupt"
    assert check_and_optimise(leaf_jpeg(), LIMITS).info.format == "JPEG"


def descendants(pid: int) -> list[int]:
    """Every living process below `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_helper_of_a_worker_killed_with_sigkill_does_not_stay_behind():
    script = "from services import isolation; isolation.warm_up(); print('ready', flush=True); input()"
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        helpers = descendants(owner.pid)
        assert len(helpers) >= 2  # the fork server, the helper it started (and multiprocessing's resource tracker)
    finally:
        owner.kill()
        owner.wait()
    wait_until(lambda: not any(alive(pid) for pid in helpers), 30, what="the helper processes to end")
