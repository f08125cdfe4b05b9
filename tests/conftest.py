from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "data" / "profiles" / "a100"


@pytest.fixture
def profile_dir() -> Path:
    return PROFILES
