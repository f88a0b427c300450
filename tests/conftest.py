"""Shared fixtures. Library tests import `tinytorch_lib` as installed; the
pipeline tests point PYTHONPATH at other exports to run these same tests on them."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tito` importable even without the editable install
