"""The package's structure: layers import downwards only, no import loops, one module reads configs."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dllm_lab.paths import project_root

SRC = project_root() / "src" / "dllm_lab"
# Lowest first. A module may import its own package and anything in a lower layer (README, "Layout").
LAYERS = [
    {"errors", "paths", "extensions"},
    {"tasks", "tracking"},
    {"models"},
    {"decoding"},
    {"temporal", "data"},
    {"rl"},
    {"training"},
    {"evaluation"},
    {"factory"},
    {"runs"},
    {"cli"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, runtime_only: bool = False) -> set[str]:
    """Every absolute module name ``path`` imports (in functions too; TYPE_CHECKING blocks unless
    ``runtime_only``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if runtime_only and isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _layer(module: str) -> int:
    room = _room(module)
    return next(i for i, rooms in enumerate(LAYERS) if room in rooms)


def _edges() -> dict[str, set[str]]:
    """File -> the package files it imports (a name that is a module counts as that module)."""
    edges = {}
    for name, path in MODULES.items():
        targets = {t for t in _imports(path) if t in MODULES and t != name}
        edges[name] = {t for t in targets if not (MODULES[t].name == "__init__.py" and name.startswith(t + "."))}
    return edges


def test_every_package_has_a_layer():
    rooms = {_room(m) for m in MODULES if m != "dllm_lab"}
    assert rooms == set().union(*LAYERS), "add new packages to LAYERS (and to the README's layout)"


def test_imports_only_go_down_the_layers():
    upward = [(src, dst) for src, dsts in _edges().items() if src != "dllm_lab" for dst in dsts
              if dst != "dllm_lab" and _room(src) != _room(dst) and _layer(dst) > _layer(src)]
    assert not upward, f"upward imports: {upward}"


def test_no_import_loop_between_files():
    edges = _edges()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    loops = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            # a package's __init__ re-exports its modules: importing the package is not a loop back
            if state.get(nxt) == 1 and not (MODULES[nxt].name == "__init__.py" and node.startswith(nxt + ".")):
                loops.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            walk(start, [start])
    assert not loops, f"import loops: {loops}"


def test_the_decoding_engine_does_not_import_lightning():
    code = "import sys, dllm_lab.decoding; assert 'lightning' not in sys.modules, 'lightning was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_only_the_factory_reads_hydra_configs():
    readers = sorted(name for name, path in MODULES.items()
                     if any(t.split(".")[0] in ("omegaconf", "hydra") for t in _imports(path, runtime_only=True)))
    # @hydra.main; they pass cfg on unread. cli.launch reads Hydra's runtime (the job's overrides), never a cfg
    entry_points = {"dllm_lab.cli.train", "dllm_lab.cli.eval", "dllm_lab.cli.launch"}
    assert set(readers) - entry_points == {"dllm_lab.factory"}
    for name in entry_points:
        tree = ast.parse(MODULES[name].read_text())
        reads = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                 and n.value.id == "cfg"]
        assert not reads, f"{name} reads cfg.{reads}"


@pytest.mark.parametrize(("cls", "limit"), [("dllm_lab.training.grpo:GRPOModule", 8),
                                             ("dllm_lab.training.mdlm:MDLMModule", 8)])
def test_modules_take_a_handful_of_typed_objects(cls, limit):
    module, name = cls.split(":")
    target = getattr(__import__(module, fromlist=[name]), name)
    params = [p for p in inspect.signature(target.__init__).parameters if p != "self"]
    assert len(params) <= limit, params


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _repo_files(*suffixes: str) -> list[Path]:
    root = project_root()
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True)
    return [root / f for f in out.stdout.split() if f.endswith(suffixes) and (root / f).exists()]


def test_every_cited_reference_exists():
    """Docstrings, configs and READMEs cite docs/methods.md (and other files); each citation must resolve."""
    root = project_root()
    legacy = "ALGORITHMS" + ".md"  # the design notes outside the repository (spelt so this file does not cite it)
    problems = []
    for path in _repo_files(".py", ".md", ".yaml", ".ipynb"):
        text = path.read_text()
        if legacy in text:
            problems.append(f"{path.relative_to(root)} cites {legacy}, which is not in the repository")
        for ref in re.findall(r"docs/[\w./-]+\.md", text):
            if not (root / ref).exists():
                problems.append(f"{path.relative_to(root)}: {ref}")
        if path.suffix == ".md":
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if target.startswith(("http://", "https://", "mailto:")):
                    continue
                file_part, _, anchor = target.partition("#")
                resolved = (path.parent / file_part) if file_part else path
                if not resolved.exists():
                    problems.append(f"{path.relative_to(root)}: link to {target}")
                elif anchor and resolved.suffix == ".md":
                    headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)}
                    if anchor not in headings:
                        problems.append(f"{path.relative_to(root)}: no heading #{anchor} in {file_part or path.name}")
    assert not problems, "\n".join(problems)
