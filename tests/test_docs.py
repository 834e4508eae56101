"""The README and the documentation run as pasted, and the documentation is complete and current.

Every ``python`` and ``bash`` block of ``README.md`` and ``docs/**.md`` is executed here, verbatim, in a fresh
folder (``text`` blocks are not code); a block that appears on several pages runs once. A block whose first
line is a comment starting with ``# not run by the tests:`` (it needs a GPU, or hours of training) is skipped,
and only those.

Bash blocks run with ``.venv`` linked to the environment running the tests, and ``DATA`` pointing to small
datasets in the official release layouts (``ogbg_molhiv/`` from OGB, ``lrgb-peptides-func/`` from LRGB),
built here: the commands are the user's, the data is the shape of theirs. The one line not run is
``make test``: it is the command this suite runs under (``.ci/run``).

The other checks: the results tables are current (``benchmarks/tables.py``), the API reference lists every
public name, ``make figures`` draws the expected figures from the committed results, and the built site uses
the bundled MathJax and only images that exist.
"""
import importlib
import json
import os
import re
import subprocess
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import pytest

from helpers import ogb_release, peptides_release

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
LANGUAGES = {"python", "bash", "text"}
SKIP_MARKER = "# not run by the tests:"
PEPTIDES = ["CC(=O)NC", "NCC(=O)O", "CCO", "c1ccccc1O", "CC(N)C(=O)O", "NCC(=O)NCC(=O)O", "CC(C)C(N)C(=O)O",
            "OCC(N)C(=O)O", "CCCC", "c1ccncc1", "CC(=O)O", "NC(CS)C(=O)O"]


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted(p for p in (REPO / "docs").rglob("*.md") if "_build" not in p.parts)]


def _blocks() -> list[tuple[str, str, str]]:
    """``(where, language, code)`` of every code block, the first page and line of each distinct one."""
    blocks = {}
    for page in _pages():
        text = page.read_text()
        for m in BLOCK.finditer(text):
            where = f"{page.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}"
            blocks.setdefault((m.group(1), m.group(2)), where)
    return [(where, language, code) for (language, code), where in blocks.items()]


def _id(block) -> str:
    where, language, _ = block
    return f"{where}-{language}"


def _skip_marked(code: str) -> None:
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if first.startswith(SKIP_MARKER):
        pytest.skip(first[len(SKIP_MARKER):].strip())


def test_every_block_is_python_bash_or_text():
    blocks = _blocks()
    assert len(blocks) >= 8
    assert {language for _, language, _ in blocks} <= LANGUAGES, [b[:2] for b in blocks]
    assert sum(code.count("```") for _, _, code in blocks) == 0


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "GRAPHATTN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "OUTDATED_IGNORE": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in _blocks() if b[1] == "python"], ids=_id)
def test_python_block_runs(tmp_path, block):
    where, _, code = block
    _skip_marked(code)
    result = subprocess.run([sys.executable, "-"], input=code, cwd=tmp_path, capture_output=True, text=True,
                            timeout=900, env=_env(tmp_path))
    assert result.returncode == 0, f"{where}:\n{result.stderr[-3000:]}"


@pytest.fixture
def data(tmp_path) -> Path:
    """``ogbg_molhiv/`` (24 molecules of the embedded ogbg-molesol with 0/1 labels) and a 12-peptide
    ``lrgb-peptides-func/``."""
    root = tmp_path / "data"
    ogb_release(root, "ogbg_molhiv", split={"train": range(0, 8), "valid": range(8, 16), "test": range(16, 24)},
                labels=[str(i % 2) for i in range(24)])
    peptides_release(root / "lrgb-peptides-func", PEPTIDES,
                     {"train": range(0, 6), "valid": range(6, 9), "test": range(9, 12)})
    return root


def _venv() -> Path:
    """The virtual environment running the tests (``make test``'s ``.venv``)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a virtual environment: the documented commands assume .venv")
    return Path(sys.prefix)


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in _blocks() if b[1] == "bash"], ids=_id)
def test_bash_block_runs(tmp_path, data, block):
    where, _, code = block
    _skip_marked(code)
    lines = code.splitlines()
    if any(re.match(r"make (demo|test)\b", command) for command in lines):
        # the two commands of a fresh machine run in the repository; `make test` is this suite's own command
        cwd, lines = REPO, [command for command in lines if not command.startswith("make test")]
        if not (REPO / ".venv" / ".installed").exists():
            pytest.skip("no .venv installed by make in this checkout")
    else:
        cwd = tmp_path / "work"
        cwd.mkdir()
        (cwd / ".venv").symlink_to(_venv(), target_is_directory=True)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)], cwd=cwd, capture_output=True,
                            text=True, timeout=1800, env={**_env(tmp_path), "DATA": str(data)})
    assert result.returncode == 0, f"{where}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    if "graphattn --version" in code:
        assert re.search(r"^graphattn \d+\.\d+", result.stdout, re.M), result.stdout


def test_skip_marker_only_skips_marked_blocks():
    with pytest.raises(pytest.skip.Exception, match="needs a GPU"):
        _skip_marked(f"{SKIP_MARKER} needs a GPU\nrun_on_gpu()\n")
    _skip_marked("import torch  # not run by the tests: only a comment on a later line counts\n")


# ---------------------------------------------------------------------------------------------------------
# generated tables and figures


def test_results_tables_are_current():
    """The tables between ``<!-- table: NAME -->`` markers equal what ``benchmarks/tables.py`` renders from
    the results files (``make tables`` rewrites them)."""
    sys.path.insert(0, str(REPO))
    from benchmarks import tables
    marked = [p for p in tables.pages() if "<!-- table: " in p.read_text()]
    assert {p.name for p in marked} >= {"README.md", "results.md", "training.md"}
    assert tables.stale_pages() == [], "stale results tables: run `make tables`"
    rendered = tables.render("<!-- table: gat -->\nold\n<!-- end table: gat -->", {"gat": "new\n"})
    assert rendered == "<!-- table: gat -->\nnew\n<!-- end table: gat -->"


def test_figures_regenerate_from_results(tmp_path):
    """``make figures`` on the committed results draws each expected figure with one series per run / seed,
    and a missing GTSP results file leaves out that figure instead of failing."""
    sys.path.insert(0, str(REPO))
    from benchmarks import figures
    results = REPO / "benchmarks" / "results"
    drawn = {f.name: f for f in figures.make_figures(results, tmp_path, gtsp_results=[])}
    assert "gtsp-flops-auc.png" not in drawn
    for name in ("core-speedup.png", "peak-memory.png", "speed-ratios.png"):
        assert name in drawn and (tmp_path / name).stat().st_size > 10_000, name
        assert "cpu" in drawn[name].stamp and re.search(r"\d{4}-\d{2}-\d{2}", drawn[name].stamp)  # device, date
    gat_rows = json.loads((results / "gat-cpu.json").read_text())["rows"]
    assert len(drawn["peak-memory.png"].series) == 2 * len({r["comparison"] for r in gat_rows})
    core_runs = {r.get("measured") for p in results.glob("layers-*.json")
                 for r in json.loads(p.read_text())["rows"] if r["comparison"] == "core"}
    assert len(drawn["core-speedup.png"].series) == len(core_runs) + len(list(results.glob("kernels-*.json")))
    with __import__("gzip").open(results / "train" / "cora-gat-cpu-curves.csv.gz", "rt") as handle:
        seeds = {line.split(",")[0] for line in handle.read().splitlines()[1:]}
    assert len(drawn["curves-gat-cora.png"].series) == 2 * len(seeds) + 1     # val + test per seed, the band
    gin_seeds = list((results / "train").glob("ogbg-molhiv-gin-vn-cpu-seed*-metrics.csv"))
    assert len(drawn["curves-gin-vn-molhiv.png"].series) == 2 * len(gin_seeds) + 1
    targets = {t["target"]: t for t in json.loads((results / "train" / "reproductions.json").read_text())["targets"]}
    arms = [arm for arm, target in figures.GTSP_NCI1_TARGETS.items() if targets[target]["runs_done"]]
    if len(arms) >= 2:      # accuracy against FLOPs per arm with runs, and each pruned arm's paired differences
        assert len(drawn["gtsp-nci1.png"].series) == 2 * len(arms) - 1
    manifest = json.loads((tmp_path / "figures.json").read_text())
    assert {entry["file"] for entry in manifest} == set(drawn)
    gtsp = figures.make_figures(results, tmp_path / "with-gtsp",
                                gtsp_results=sorted((REPO / "examples" / "results").glob("gtsp_*.json")))
    assert any(f.name == "gtsp-flops-auc.png" and f.series for f in gtsp)


def test_committed_figures_are_the_generated_ones():
    """Every figure a page shows is in ``docs/figures/``, and ``figures.json`` lists what ``make figures``
    last drew (so the pages show generated figures, not hand-made ones)."""
    manifest = {entry["file"] for entry in json.loads((REPO / "docs" / "figures" / "figures.json").read_text())}
    shown = {Path(m).name for page in _pages() for m in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text())
             if "figures/" in m}
    assert shown and shown <= manifest, shown - manifest
    assert all((REPO / "docs" / "figures" / name).exists() for name in manifest)


# ---------------------------------------------------------------------------------------------------------
# the API reference and the built site

PUBLIC_MODULES = ["graphattn", "graphattn.nn", "graphattn.functional", "graphattn.models", "graphattn.data",
                  "graphattn.seq", "graphattn.adapters", "graphattn.sparsify", "sparse_kernels"]


def _referenced_objects() -> set[int]:
    """The objects the API reference pages (``docs/api/*.rst``) document or point to, by identity."""
    objects = set()
    for page in (REPO / "docs" / "api").glob("*.rst"):
        text = page.read_text()
        module = re.search(r"^\.\. currentmodule:: (\S+)", text, re.M)
        names = []
        if module:
            for block in re.findall(r"^\.\. autosummary::\n((?:   .*\n|\n)+)", text, re.M):
                names += [f"{module.group(1)}.{line.strip()}" for line in block.splitlines()
                          if line.strip() and not line.strip().startswith(":")]
        names += re.findall(r":py:obj:`[^<`]*<([\w.]+)>`", text)
        for name in names:
            module_name, _, attr = name.rpartition(".")
            objects.add(id(getattr(importlib.import_module(module_name), attr)))
    return objects


def test_api_reference_lists_every_public_name():
    referenced = _referenced_objects()
    missing = [f"{m}.{name}" for m in PUBLIC_MODULES for name in importlib.import_module(m).__all__
               if name != "__version__" and not isinstance(getattr(importlib.import_module(m), name), types.ModuleType)
               and id(getattr(importlib.import_module(m), name)) not in referenced]
    assert not missing, f"public names missing from docs/api/*.rst: {missing}"


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


@pytest.mark.slow
def test_docs_build_offline_with_local_mathjax_and_existing_images(tmp_path):
    """``make docs``'s build (warnings are errors, nitpicky) succeeds; pages with math load the bundled
    MathJax, never a CDN; every image a page references exists; every public name has an API entry."""
    out = tmp_path / "html"
    result = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q",
                             "-d", str(tmp_path / "doctrees"), str(REPO / "docs"), str(out)],
                            capture_output=True, text=True, timeout=1200, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr[-5000:]
    assert (out / "_static" / "mathjax" / "tex-chtml.js").exists()
    math_pages = 0
    for page in out.rglob("*.html"):
        assets = _Assets()
        assets.feed(page.read_text())
        mathjax = [s for s in assets.scripts if "mathjax" in s.lower()]
        assert all(not s.startswith(("http:", "https:", "//")) for s in mathjax), (page, mathjax)
        for src in mathjax:
            assert (page.parent / src.split("?")[0]).resolve().exists(), (page, src)
        math_pages += bool(mathjax)
        for src in assets.images:
            if not src.startswith("data:"):
                assert not src.startswith(("http:", "https:")), (page, src)
                assert (page.parent / src.split("?")[0]).resolve().exists(), (page, src)
    assert math_pages > 10
    gat = (out / "api" / "generated" / "graphattn.nn.GATConv.html").read_text()
    assert "mathjax/tex-chtml.js" in gat and r"\alpha_{i,j}" in gat
    inventory = subprocess.run([sys.executable, "-m", "sphinx.ext.intersphinx", str(out / "objects.inv")],
                               capture_output=True, text=True, timeout=120).stdout
    for m in PUBLIC_MODULES:
        module = importlib.import_module(m)
        for name in module.__all__:
            obj = getattr(module, name)
            if name == "__version__" or isinstance(obj, types.ModuleType):
                continue
            defined = [f"{mod}.{name}" for mod in PUBLIC_MODULES if getattr(importlib.import_module(mod), name,
                                                                           None) is obj]
            assert any(re.search(rf"^\s+{re.escape(d)}\s", inventory, re.M) for d in defined), f"{m}.{name}"


def test_build_check_flags_an_undocumented_public_name(monkeypatch):
    """``docs/conf.py``'s consistency check (which ``-W`` turns into a failed build) names a public object
    that the reference documents under no name, and accepts re-exports documented where they are defined."""
    import importlib.util
    from types import SimpleNamespace
    spec = importlib.util.spec_from_file_location("docs_conf", REPO / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    warned = []
    monkeypatch.setattr(conf, "logger", SimpleNamespace(warning=lambda msg, *args, **kw: warned.append(args[0])))
    documented = {name: SimpleNamespace(objtype="class", aliased=False) for m in conf.PUBLIC_MODULES[1:]
                  for name in conf.public_objects(m)}
    documented.update({"graphattn.AttentionGraph": SimpleNamespace(objtype="class", aliased=False),
                       "graphattn.count_flops": SimpleNamespace(objtype="function", aliased=False)})
    env = SimpleNamespace(get_domain=lambda name: SimpleNamespace(objects=documented))
    conf._check_public_names_documented(None, env)
    assert warned == []
    del documented["graphattn.nn.GATConv"]
    conf._check_public_names_documented(None, env)
    assert warned == ["graphattn.GATConv", "graphattn.nn.GATConv"]
