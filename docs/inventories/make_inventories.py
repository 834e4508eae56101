"""Writes the intersphinx inventories ``python.inv``, ``torch.inv`` and ``torch_geometric.inv`` from the
installed packages (the docs build has no network, and the projects' own ``objects.inv`` files could not be
downloaded where these were made).

Each inventory lists the public classes, functions and modules of its package (walked from the packages'
public namespaces) under their public names and, for classes, also under their defining module's path
(``torch.nn.modules.module.Module``), which is what autodoc writes for type hints. Every entry points to the
page its project's documentation uses for it (PyTorch and PyG: ``generated/<name>.html``; Python: its
library page), so links resolve to the right site; an anchor may miss where a project files a name
elsewhere. Run ``python docs/inventories/make_inventories.py`` after upgrading torch or PyG.
"""
from __future__ import annotations

import builtins
import importlib
import inspect
import pkgutil
import types
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _write(path: Path, project: str, version: str, entries: dict[str, tuple[str, str]]) -> None:
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
              "# The remainder of this file is compressed using zlib.\n")
    body = "".join(f"{name} py:{role} 1 {uri} -\n" for name, (role, uri) in sorted(entries.items()))
    path.write_bytes(header.encode() + zlib.compress(body.encode()))


def _role(obj) -> str | None:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return None


def _walk(entries: dict, module_names: list[str], uri) -> None:
    """Adds the public classes and functions of each module, their public methods, and each class's
    defining path; ``uri(module, page, anchor)`` gives an entry's address."""
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # an optional backend missing here: its names are not linked
            continue
        entries.setdefault(module_name, ("module", uri(module_name, module_name, module_name)))
        names = dict.fromkeys([*getattr(module, "__all__", []), *(n for n in dir(module) if not n.startswith("_"))])
        for name in names:
            obj = getattr(module, name, None)
            role = _role(obj)
            if role is None or isinstance(obj, types.ModuleType):
                continue
            public = f"{module_name}.{name}"
            entries.setdefault(public, (role, uri(module_name, public, public)))
            if inspect.isclass(obj):
                defining = f"{obj.__module__}.{obj.__qualname__}"
                entries.setdefault(defining, (role, uri(module_name, public, public)))
                for member, value in vars(obj).items():
                    if not member.startswith("_") and callable(value):
                        target = ("method", uri(module_name, public, f"{public}.{member}"))
                        entries.setdefault(f"{public}.{member}", target)
                        entries.setdefault(f"{defining}.{member}", target)


def _submodules(package: str, depth: int) -> list[str]:
    try:
        module = importlib.import_module(package)
    except Exception:  # a module needing an optional dependency that is not installed
        return []
    names = [package]
    if depth and hasattr(module, "__path__"):
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("_"):
                names += _submodules(f"{package}.{info.name}", depth - 1)
    return names


def python_inventory() -> dict:
    entries = {}
    for name in dir(builtins):
        obj = getattr(builtins, name)
        if name.startswith("_") or _role(obj) is None:
            continue
        page = "exceptions" if inspect.isclass(obj) and issubclass(obj, BaseException) else (
            "stdtypes" if name in {"str", "list", "dict", "tuple", "set", "frozenset", "bytes", "range"}
            else "functions")
        entries[name] = (_role(obj), f"library/{page}.html#{name}")
    for (name, role) in [("None", "data"), ("True", "data"), ("False", "data"), ("Ellipsis", "data")]:
        entries[name] = (role, f"library/constants.html#{name}")
    for name in ("int", "float", "bool", "complex"):
        entries[name] = ("class", f"library/functions.html#{name}")
    modules = ["typing", "collections", "collections.abc", "pathlib", "os", "dataclasses", "enum", "contextlib",
               "functools", "itertools", "re", "io", "json", "logging", "argparse", "random", "math", "types",
               "threading", "ctypes", "abc", "numbers", "warnings", "weakref", "zlib", "gzip", "csv", "pickle"]
    _walk(entries, modules, lambda module, page, anchor: f"library/{module}.html#{anchor}")
    return entries


def _generated(module: str, page: str, anchor: str) -> str:
    return f"generated/{page}.html#{anchor}"


def torch_inventory() -> dict:
    import torch
    entries = {"torch.Tensor": ("class", "tensors.html#torch.Tensor"),
               "torch.dtype": ("class", "tensor_attributes.html#torch.dtype"),
               "torch.device": ("class", "tensor_attributes.html#torch.device"),
               "torch.Size": ("class", "size.html#torch.Size"),
               "torch.Generator": ("class", "generated/torch.Generator.html#torch.Generator")}
    for member, value in vars(torch.Tensor).items():
        if not member.startswith("_") and callable(value):
            entries[f"torch.Tensor.{member}"] = ("method", f"generated/torch.Tensor.{member}.html")
    _walk(entries, ["torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.optim",
                    "torch.optim.lr_scheduler", "torch.utils.data", "torch.sparse", "torch.autograd",
                    "torch.library", "torch.distributed", "torch.nn.parallel", "torch.fx", "torch.utils.flop_counter",
                    "torch.nn.attention", "torch.nn.attention.flex_attention", "torch.nested"], _generated)
    return entries


def pyg_inventory() -> dict:
    entries = {}
    _walk(entries, _submodules("torch_geometric", 2), _generated)
    return entries


def main() -> None:
    import sys

    import torch
    import torch_geometric
    _write(HERE / "python.inv", "Python", f"{sys.version_info.major}.{sys.version_info.minor}", python_inventory())
    _write(HERE / "torch.inv", "PyTorch", torch.__version__.split("+")[0], torch_inventory())
    _write(HERE / "torch_geometric.inv", "pytorch_geometric", torch_geometric.__version__, pyg_inventory())


if __name__ == "__main__":
    main()
