"""Sphinx configuration of graphattn's documentation (``make docs``).

The build is offline: MathJax comes from ``sphinx-mathjax-offline`` and the intersphinx inventories of
Python, PyTorch and PyG are vendored in ``docs/inventories/`` (written by ``docs/inventories/make_inventories.py``).
Every public name (``__all__``) of the documented modules must appear in the API reference: the
``build-finished`` check below emits a warning for each one missing, which ``-W`` turns into an error.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import graphattn  # noqa: E402
from sphinx.pycode import ModuleAnalyzer  # noqa: E402
from sphinx.util import logging  # noqa: E402

logger = logging.getLogger(__name__)

project = "graphattn"
author = "the graphattn authors"
release = version = graphattn.__version__
copyright = "2026, the graphattn authors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "inventories", "screenshots/README.md"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = f"graphattn {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_static_path: list[str] = []
templates_path = ["_templates"]
html_show_sourcelink = False

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_inherit_docstrings = False
autodoc_class_signature = "mixed"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Shapes", "params_style")]

nitpicky = True
#: private names in public signatures (type aliases and an internal class), shown as written
nitpick_ignore = [("py:class", "PatternLike"), ("py:class", "graphattn.adapters.capture.CaptureStore"),
                  ("py:class", "graphattn.models.graphtrans.TokenMasks")]

# Offline cross-links: inventories vendored in docs/inventories/ (no network at build time).
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", str(DOCS / "inventories" / "python.inv")),
    "torch": ("https://docs.pytorch.org/docs/stable", str(DOCS / "inventories" / "torch.inv")),
    "torch_geometric": ("https://pytorch-geometric.readthedocs.io/en/2.8.1",
                        str(DOCS / "inventories" / "torch_geometric.inv")),
}
intersphinx_timeout = 1

#: the modules whose every public name the API reference documents
PUBLIC_MODULES = ["graphattn", "graphattn.nn", "graphattn.functional", "graphattn.models", "graphattn.data",
                  "graphattn.seq", "graphattn.adapters", "graphattn.sparsify", "sparse_kernels"]


def public_objects(module_name: str) -> dict[str, object]:
    """The public objects of a module by qualified name: its ``__all__`` except submodules (documented on
    their own pages) and ``__version__``."""
    module = importlib.import_module(module_name)
    return {f"{module_name}.{name}": getattr(module, name) for name in module.__all__
            if name != "__version__" and not isinstance(getattr(module, name), type(sys))}


def _resolve(qualified: str) -> object:
    module_name, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def _check_public_names_documented(app, env) -> None:
    """A public object that the API reference documents under no name is a warning (an error under ``-W``);
    a re-export (``graphattn.GATConv``) counts as documented where it is defined (``graphattn.nn.GATConv``)."""
    documented = set()
    for qualified, entry in env.get_domain("py").objects.items():
        if entry.objtype in ("class", "function", "data", "exception", "attribute") and not entry.aliased:
            try:
                documented.add(id(_resolve(qualified)))
            except (AttributeError, ImportError, ValueError):
                continue
    for module_name in PUBLIC_MODULES:
        for qualified, obj in public_objects(module_name).items():
            if id(obj) not in documented:
                logger.warning("public name %s is not in the API reference", qualified,
                               type="graphattn", subtype="undocumented")


#: short names that postponed annotations (``from __future__ import annotations``) leave unresolved, and the
#: documented object each one means
TYPE_ALIASES = {"Tensor": "torch.Tensor", "AttentionGraph": "graphattn.AttentionGraph",
                "GPSLayer": "graphattn.nn.GPSLayer", "FlopCount": "graphattn.utils.FlopCount",
                "Pattern": "graphattn.seq.Pattern", "'Pattern'": "graphattn.seq.Pattern"}


def _documented_names() -> dict[str, str]:
    """Each public name re-exported elsewhere (``graphattn.graph_attention``) -> the name the reference
    documents it under (``graphattn.functional.graph_attention``: the first of ``PUBLIC_MODULES`` in
    documentation order that exports it)."""
    canonical, names = {}, {}
    for module_name in PUBLIC_MODULES[1:] + PUBLIC_MODULES[:1]:
        for qualified, obj in public_objects(module_name).items():
            names[qualified] = canonical.setdefault(id(obj), qualified)
    return {name: target for name, target in names.items() if name != target}


def _resolve_type_alias(app, env, node, contnode):
    if not hasattr(env, "graphattn_aliases"):
        env.graphattn_aliases = {**_documented_names(), **TYPE_ALIASES}
    target = env.graphattn_aliases.get(node.get("reftarget"))
    if target is None or node.get("refdomain") != "py":
        return None
    node["reftarget"] = target
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], target, node,
                                             contnode) or app.emit_firstresult("missing-reference", env, node,
                                                                                contnode, allowed_exceptions=())


def _public_bases(app, name, obj, options, bases: list) -> None:
    """Shows a private base class (``graphattn.nn._gat_common.GATBase``) as its own public bases."""
    index = 0
    while index < len(bases):
        base = bases[index]
        if any(part.startswith("_") for part in getattr(base, "__module__", "").split(".")):
            bases[index:index + 1] = [b for b in base.__bases__ if b not in bases]
        else:
            index += 1


def _data_comment(app, what, name, obj, options, lines: list) -> None:
    """A constant re-exported by a package (``graphattn.data.PLANETOID``) gets the ``#:`` comment of the
    module that defines it, instead of its type's docstring (``dict``'s)."""
    if what != "data" or lines[:1] != (type(obj).__doc__ or "").splitlines()[:1]:
        return
    package, _, attr = name.rpartition(".")
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(package + ".") and getattr(module, attr, None) is obj:
            comment = ModuleAnalyzer.for_module(module_name).find_attr_docs().get(("", attr))
            if comment:
                lines[:] = list(comment)
                return


def setup(app):
    app.connect("autodoc-process-docstring", _data_comment)
    app.connect("env-check-consistency", _check_public_names_documented)
    app.connect("missing-reference", _resolve_type_alias)
    app.connect("autodoc-process-bases", _public_bases)
