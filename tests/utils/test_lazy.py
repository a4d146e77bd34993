"""Lazily exported package names are visible to help() (pydoc) and dir(), not only __getattr__."""

from __future__ import annotations

import pydoc
import subprocess
import sys


def test_help_of_vqkit_eval_lists_its_functions():
    """`help(vqkit.eval)` used to list only __getattr__; every exported name must be documented."""
    import vqkit.eval

    text = pydoc.render_doc(vqkit.eval, renderer=pydoc.plaintext)
    functions = text[text.index("FUNCTIONS"):]
    for name in vqkit.eval.__all__:
        assert f"\n    {name}(" in functions, name
    assert set(vqkit.eval.__all__) <= set(dir(vqkit.eval))


def test_help_works_in_a_fresh_interpreter():
    """What a user types: nothing imported beforehand (pydoc resolves the lazy names itself)."""
    code = ("import pydoc, vqkit.eval, vqkit.models, vqkit.train\n"
            "for m in (vqkit.eval, vqkit.models, vqkit.train):\n"
            "    t = pydoc.render_doc(m, renderer=pydoc.plaintext)\n"
            "    missing = [n for n in m.__all__ if n + '(' not in t and n not in t]\n"
            "    assert not missing, (m.__name__, missing)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
