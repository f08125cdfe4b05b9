"""The package imports from a source checkout's root even when installed without -e."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# An editable install finds infersim.roofline through a finder of its own; without it, only the checkout's
# folders are there, as for a `pip install .` (not -e) run from the checkout's root.
WITHOUT_EDITABLE_FINDER = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")
                    and "editable" not in type(f).__module__]
import infersim.roofline, infersim.sim, infersim.kernels
from infersim.roofline import step_cost
print(infersim.roofline.__file__)
"""


def test_subpackages_import_from_the_checkout_root():
    proc = subprocess.run([sys.executable, "-c", WITHOUT_EDITABLE_FINDER], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == REPO / "roofline" / "__init__.py"
