"""Shared test helpers: where the offline copies of GSM8K and the GPT-2 BPE files live."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

if (SHARED / "tiktoken_cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))


@pytest.fixture
def shared_data():
    """../shared/data, or skip the test when this checkout has no shared folder beside it."""
    d = SHARED / "data"
    if not d.is_dir():
        pytest.skip("../shared/data is absent")
    return d
