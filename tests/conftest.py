"""Shared fixtures. Library tests import `tinytorch_lib` as installed; the
pipeline tests point PYTHONPATH at other exports to run these same tests on them."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # `tito` importable even without the editable install. Appended, not inserted first: the
    # pipeline runs these tests with PYTHONPATH at a student's export, which must come first.
    sys.path.append(str(ROOT))
