"""infersim: the front door (CLI, scenario files, reports) over infersim.roofline, .sim and .kernels."""
from pathlib import Path

# An installed infersim holds roofline/, sim/ and kernels/ inside this package (pyproject.toml maps them
# there), but in a source checkout they are this folder's siblings. Run from the checkout's root, Python
# finds this folder before the installed package, so `import infersim.roofline` would fail there; when
# the siblings are present, look for subpackages beside this folder too.
_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "roofline" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))
