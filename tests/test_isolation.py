"""Photos are checked and optimised in a helper process: its answers, its refusals, and its death."""

from __future__ import annotations

import os

import pytest

from services.images import ImageRejected
from services.isolation import PhotoLimits, PreparedPhoto, check_and_optimise
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
