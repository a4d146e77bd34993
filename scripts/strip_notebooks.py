#!/usr/bin/env python
"""Strip notebooks before committing: outputs, execution counts and editor metadata.

    python scripts/strip_notebooks.py                 # clean notebooks/*.ipynb in place
    python scripts/strip_notebooks.py --check         # exit 1 and list notebooks that need it (CI)
    python scripts/strip_notebooks.py a.ipynb b.ipynb
    python scripts/strip_notebooks.py --filter < a.ipynb  # the stripped text on stdout (git's clean filter)
    python scripts/strip_notebooks.py --install-filter    # make setup: `git add` strips notebooks itself

The git filter is nbstripout's way: ``.gitattributes`` names the ``strip-notebooks`` filter for
``*.ipynb``, and ``--install-filter`` defines it in this clone's git config, so saving a notebook in
JupyterLab keeps its outputs on disk while ``git add`` / ``git commit`` take it stripped (``git status``
and ``git diff`` show only what a person changed).

Kept: cell sources, cell ids, cell tags (papermill's ``parameters``), the kernelspec (the ``vqkit``
kernel the notebooks run on) and the language name. Everything else (outputs, execution counts,
widget state, collapsed/scrolled flags, the Python version of whoever ran it last) goes, so
committed notebooks are small and their diffs show only what a person changed (nbdev's habit).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEEP_NOTEBOOK_METADATA = ("kernelspec",)


def clean_notebook(nb: dict) -> dict:
    """A stripped copy of a notebook (as a JSON dict, nbformat 4)."""
    out = dict(nb)
    meta = {k: nb.get("metadata", {})[k] for k in KEEP_NOTEBOOK_METADATA if k in nb.get("metadata", {})}
    language = nb.get("metadata", {}).get("language_info", {}).get("name")
    if language:
        meta["language_info"] = {"name": language}
    out["metadata"] = meta
    cells = []
    for cell in nb.get("cells", []):
        c = {k: v for k, v in cell.items() if k in ("cell_type", "id", "metadata", "source")}
        tags = cell.get("metadata", {}).get("tags")
        c["metadata"] = {"tags": tags} if tags else {}
        if cell.get("cell_type") == "code":
            c["execution_count"] = None
            c["outputs"] = []
        cells.append(c)
    out["cells"] = cells
    return out


def dumps(nb: dict) -> str:
    """JSON text the way Jupyter writes notebooks (1-space indent, sorted keys, trailing newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def needs_cleaning(path: Path) -> bool:
    return needs_cleaning_text(path.read_text(encoding="utf-8"))


def needs_cleaning_text(text: str) -> bool:
    return dumps(clean_notebook(json.loads(text))) != text


#: The git filter's name (``.gitattributes``: ``*.ipynb filter=strip-notebooks``) and its clean command,
#: run by git from the top of the work tree.
FILTER = "strip-notebooks"
FILTER_COMMAND = "python3 scripts/strip_notebooks.py --filter"


def filter_text(text: str) -> str:
    """What git stores of a notebook: stripped, or the text unchanged when it is not a notebook's JSON
    (a half-written file is committed as it is rather than lost)."""
    try:
        nb = json.loads(text)
    except ValueError:
        return text
    return dumps(clean_notebook(nb)) if isinstance(nb, dict) and "cells" in nb else text


def install_filter(repo: Path = REPO) -> bool:
    """Define the ``strip-notebooks`` clean filter in ``repo``'s git config; False outside a git clone."""
    import subprocess

    inside = subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True, check=False)
    if inside.returncode != 0:
        return False
    subprocess.run(["git", "-C", str(repo), "config", f"filter.{FILTER}.clean", FILTER_COMMAND], check=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="strip_notebooks.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when any needs cleaning")
    parser.add_argument("--filter", action="store_true", help="strip stdin to stdout (git's clean filter)")
    parser.add_argument("--install-filter", action="store_true",
                        help="define the strip-notebooks git filter in this clone (make setup does)")
    args = parser.parse_args(argv)
    if args.filter:  # bytes in, bytes out: notebooks are UTF-8 whatever the locale
        data = sys.stdin.buffer.read()
        try:
            data = filter_text(data.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            pass  # not a notebook's text: stored as it is
        sys.stdout.buffer.write(data)
        return 0
    if args.install_filter:
        install_filter()
        return 0
    paths = args.paths or sorted((REPO / "notebooks").glob("*.ipynb"))
    dirty = [p for p in paths if needs_cleaning(p)]
    for p in dirty:
        if args.check:
            print(f"{p}: has outputs or metadata; run scripts/strip_notebooks.py", file=sys.stderr)
        else:
            p.write_text(dumps(clean_notebook(json.loads(p.read_text(encoding="utf-8")))), encoding="utf-8")
            print(f"stripped {p}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
