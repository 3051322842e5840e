"""Test-wide setup: tests/ on sys.path (for the helpers in `linarch_testing`), one torch thread."""

import sys
from pathlib import Path

import torch

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

torch.set_num_threads(1)
