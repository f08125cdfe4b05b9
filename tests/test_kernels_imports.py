"""How the kernel modules import each other: no cycles, the CUDA side never reaching back into the CPU
kernels, and nothing of the simulator on the GPU image (which has no simpy or pydantic)."""
import ast
import graphlib
import subprocess
import sys
from pathlib import Path

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
PACKAGE = "infersim.kernels"
CPU_SIDE = {f"{PACKAGE}.{name}" for name in ("attention", "quant", "sampling", "validate", "calibrate")}


def _module_names() -> dict:
    """{module name: its source file} for every module of infersim.kernels, packages by their __init__."""
    names = {}
    for path in KERNELS.rglob("*.py"):
        parts = path.relative_to(KERNELS).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join((PACKAGE, *parts))] = path
    return names


def import_graph() -> dict:
    """{module: the infersim.kernels modules it imports}, from every import statement in its source
    (the lazy ones inside functions too); importing a submodule counts as importing its packages."""
    modules = _module_names()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
        imported = set()
        for target in targets:
            while target.startswith(PACKAGE):
                if target in modules and target != name:
                    imported.add(target)
                target = target.rpartition(".")[0]
        graph[name] = imported
    return graph


def test_the_import_graph_follows_relative_absolute_and_lazy_imports():
    graph = import_graph()
    assert f"{PACKAGE}.cuda.attention" in graph[f"{PACKAGE}.attention"]  # from .cuda import attention as ...
    assert f"{PACKAGE}.device" in graph[f"{PACKAGE}.cuda.quant"]  # from ..device import ...
    assert f"{PACKAGE}.cuda.compile" in graph[f"{PACKAGE}.calibrate"]  # from infersim.kernels.cuda.compile import
    assert f"{PACKAGE}._numba_gemm" in graph[f"{PACKAGE}.calibrate"]  # inside a function


def test_kernel_modules_import_each_other_without_a_cycle():
    graphlib.TopologicalSorter(import_graph()).prepare()  # raises CycleError naming the cycle


def test_the_cuda_side_reaches_none_of_the_cpu_kernels():
    graph = import_graph()
    for name in (n for n in graph if n.startswith(f"{PACKAGE}.cuda")):
        reached, todo = set(), [name]
        while todo:
            for target in graph[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        assert not reached & CPU_SIDE, (name, reached & CPU_SIDE)


def test_kernels_and_roofline_import_without_the_simulator():
    # the GPU image has numpy, numba, cupy, matplotlib and pyyaml, not simpy or pydantic; `infersim
    # validate` there also loads the front door's plots and tables
    code = """
import importlib, pkgutil, sys
for name in ("simpy", "pydantic", "infersim.sim"):
    sys.modules[name] = None  # importing it now raises ImportError
import infersim.kernels
for module in pkgutil.walk_packages(infersim.kernels.__path__, "infersim.kernels."):
    importlib.import_module(module.name)
import infersim.roofline, infersim.plots, infersim.report
print(sum(name.startswith("infersim.kernels.") for name in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(_module_names()) - 1  # all but the infersim.kernels package itself
