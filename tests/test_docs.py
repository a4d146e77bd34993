"""The README and docs stay true to the repository: every link and path they name exists, every `vqkit`
command they show is a real command with real options, the README's example record loads, the layout
they describe is the tree, and the README stays a front door (at most 220 lines).

Pages under docs/experiments/ and CHANGELOG.md speak of earlier commits on purpose (old config names,
moved modules), so only their links and commands are checked, not the paths they name.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
from pathlib import Path

import pytest
from helpers import REPO

README = REPO / "README.md"
CURRENT_DOCS = [README, *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "docs" / "benchmarks").rglob("*.md"))]
HISTORY_DOCS = [REPO / "CHANGELOG.md", *sorted((REPO / "docs" / "experiments").glob("*.md"))]
ALL_DOCS = CURRENT_DOCS + HISTORY_DOCS

LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"(?<![\w./-])((?:configs|docs|scripts|notebooks|tests|vqkit)/[\w./-]*[\w/])")
COMMAND = re.compile(r"(?<![\w./-])(vqkit-train|vqkit\.train|vqkit)(?![\w./'-])")


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def code_texts(text: str) -> list[str]:
    """The document's code: fenced blocks (continued lines joined) and inline code spans."""
    blocks = [b.replace("\\\n", " ") for b in CODE_BLOCK.findall(text)]
    prose = CODE_BLOCK.sub("", text)
    return [line for b in blocks for line in b.splitlines()] + CODE_SPAN.findall(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", path.read_text(), re.M)}


@pytest.mark.parametrize("doc", ALL_DOCS, ids=rel)
def test_links_resolve(doc):
    """Every relative link points at a file or folder that exists (and at a heading that exists)."""
    bad = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading '{anchor}' in {rel(dest)}")
    assert not bad, f"{rel(doc)}: " + "; ".join(bad)


@pytest.mark.parametrize("doc", CURRENT_DOCS, ids=rel)
def test_named_paths_exist(doc):
    """Paths in the repository that the page names (configs, docs, scripts, modules) exist."""
    missing = set()
    for path in REPO_PATH.findall(doc.read_text()):
        if re.search(r"[A-Z<>*{}]|\.\.", path) or path.startswith("tests/browser/node_modules"):
            continue  # placeholders (RUN, <name>), globs, ranges such as notebooks/01..05
        if not (REPO / path).exists():
            missing.add(path)
    assert not missing, f"{rel(doc)} names paths that do not exist: {sorted(missing)}"


def _commands(doc: Path) -> list[tuple[str, str, list[str]]]:
    """(command, subcommand, options) of every `vqkit ...`, `vqkit-train ...`, `-m vqkit.train ...` shown."""
    found = []
    for code in code_texts(doc.read_text()):
        for m in COMMAND.finditer(code):
            rest = re.split(r";|&&| #|(?<!\\)\|", code[m.end():])[0].split()
            if m.group(1) != "vqkit":
                name = "train"
            elif rest and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
                name, rest = rest[0], rest[1:]
            else:
                continue  # `vqkit` alone, `vqkit COMMAND`
            sub = rest[0] if name == "prep" and rest and not rest[0].startswith("-") else ""
            options = [re.match(r"--[a-z][a-z0-9-]*", t.lstrip("[")).group(0) for t in rest
                       if re.match(r"--[a-z][a-z0-9-]*", t.lstrip("["))]
            found.append((name, sub, options))
    return found


_HELP: dict[tuple[str, str], str] = {}


def command_help(name: str, sub: str) -> str:
    """What `vqkit NAME [SUB] --help` prints."""
    from vqkit.commands import COMMANDS

    key = (name, sub)
    if key not in _HELP:
        module = importlib.import_module(COMMANDS[name][0])
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            module.main([*([sub] if sub else []), "--help"])
        _HELP[key] = out.getvalue()
    return _HELP[key]


@pytest.mark.parametrize("doc", ALL_DOCS, ids=rel)
def test_commands_are_real(doc):
    """Every `vqkit COMMAND` shown is a registered command, and every option it is shown with is one of
    that command's options (`vqkit prep NAME`: of that converter)."""
    from vqkit.commands import COMMANDS

    bad = []
    for name, sub, options in _commands(doc):
        if name not in COMMANDS:
            bad.append(f"vqkit {name}: no such command")
            continue
        subs = [s for s in sub.split("\\|") if s] or [""]
        for s in subs:
            text = command_help(name, s)
            if s and "usage:" not in text:
                bad.append(f"vqkit {name} {s}: no such subcommand")
            bad += [f"vqkit {name} {s}".strip() + f": no option {o}" for o in options
                    if not re.search(re.escape(o) + r"(?![\w-])", text)]
    assert not bad, f"{rel(doc)}: " + "; ".join(sorted(set(bad)))


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; details belong in docs/ (at most 220)"
    text = "\n".join(lines)
    assert "source .venv/bin/activate" in text, "README.md must say once how to enter the environment"
    for doc in CURRENT_DOCS:
        for code in code_texts(doc.read_text()):
            assert not re.match(r"\s*\.venv/bin/\S+\s", code), (
                f"{rel(doc)}: '{code.strip()}': commands are written bare (`vqkit ...`), after the README's "
                "`source .venv/bin/activate`")


def test_readme_example_record_loads(tmp_path):
    """The record under "Your own data" is a valid record: written beside its photos, it loads."""
    from PIL import Image

    from vqkit.data.schema import load_records

    section = README.read_text().split("## Your own data", 1)[1]
    record = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))
    for image in record["images"]:
        (tmp_path / image).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (28, 28)).save(tmp_path / image)
    (tmp_path / "train.jsonl").write_text(json.dumps(record) + "\n")
    [loaded] = load_records(str(tmp_path / "train.jsonl"))
    assert loaded.question == record["question"] and loaded.answer == record["answer"]


def test_readme_layout_lists_every_config():
    layout = README.read_text().split("## Repository layout", 1)[1]
    configs = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    missing = [c for c in configs if c not in layout]
    assert not missing, f"README.md's layout omits configs {missing}"
    for folder in ("base/", "deepspeed/"):
        assert folder in layout, f"README.md's layout omits configs/{folder}"
    docs = [p.name for p in (REPO / "docs").iterdir() if p.suffix == ".md" or p.is_dir()]
    missing = [d for d in docs if d not in layout]
    assert not missing, f"README.md's layout omits docs/ entries {missing}"


def test_architecture_names_every_module():
    """docs/architecture.md's layer table names every folder of the package and every module in it."""
    text = (REPO / "docs" / "architecture.md").read_text()
    table = [line for line in text.splitlines() if re.match(r"\| \d \|", line)]
    package = REPO / "vqkit"
    missing = []
    for folder in sorted(p for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        rows = [line for line in table if f"`{folder.name}/`" in line]
        if not rows:
            missing.append(f"{folder.name}/")
            continue
        missing += [f"{folder.name}/{m.stem}" for m in sorted(folder.glob("*.py"))
                    if m.stem != "__init__" and f"`{m.stem}`" not in rows[0]]
    missing += [m.stem for m in sorted(package.glob("*.py"))
                if m.stem != "__init__" and not any(f"`{m.stem}`" in line for line in table)]
    assert not missing, f"docs/architecture.md's layer table omits {missing}"


def _resolves(dotted: str) -> bool:
    """`vqkit.a.b.name`: a module, or an attribute of the longest module prefix."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("doc", CURRENT_DOCS, ids=rel)
def test_python_names_exist(doc):
    """Every dotted name `vqkit.x.y` the page gives (a module, a function, a class) can be imported."""
    names = set(re.findall(r"(?<![\w/.-])vqkit(?:\.[A-Za-z_]\w*)+", doc.read_text()))
    missing = sorted(n for n in names if not _resolves(n.rstrip(".")))
    assert not missing, f"{rel(doc)} names Python objects that do not exist: {missing}"
