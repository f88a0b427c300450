"""The kit's root on sys.path (tito and tinytorch_lib importable without the editable install)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
