"""The numbered notebooks: committed clean and small, and all five executed in order with papermill
on the ``vqkit`` kernel with their tiny defaults (CI runs this)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_data_inspection", "02_model_assembly", "03_debug_run", "04_evaluation", "05_geometry_heads"]
KERNEL = "vqkit"
# Absolute paths of a machine: home folders, temp folders, this checkout, Windows drives.
MACHINE_PATH = re.compile(r"(/home/|/Users/|/root/|/tmp/|/work/|/private/var/|[A-Z]:\\\\)")


def _strip_module():
    spec = importlib.util.spec_from_file_location("strip_notebooks", REPO / "scripts" / "strip_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name: str) -> dict:
    return json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())


def test_notebook_set_is_complete():
    assert sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean_small_and_thin(name):
    path = REPO / "notebooks" / f"{name}.ipynb"
    nb = _load(name)
    assert not _strip_module().needs_cleaning(path), f"{path}: run scripts/strip_notebooks.py"
    assert path.stat().st_size < 20_000
    assert nb["metadata"]["kernelspec"]["name"] == KERNEL
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], "the first code cell is the papermill parameters cell"
    text = path.read_text()
    assert not MACHINE_PATH.search(text), f"{path}: machine path {MACHINE_PATH.search(text).group(0)!r}"
    for cell in code:
        source = "".join(cell["source"])
        # Thin drivers: logic lives in vqkit (viz, train, eval), not in the notebooks.
        assert not re.search(r"^\s*(class|def)\s", source, re.M), f"{name}: define it in vqkit, not in a notebook"
        assert "sys.path" not in source
        logic = [ln for ln in source.splitlines()
                 if ln.strip() and not ln.lstrip().startswith(("#", "import ", "from "))]
        assert len(logic) <= 12, f"{name}: a long cell; move the logic into vqkit"


def test_parameters_are_visible_to_papermill():
    import papermill

    for name in NOTEBOOKS:
        params = papermill.inspect_notebook(str(REPO / "notebooks" / f"{name}.ipynb"))
        assert "work_dir" in params, name
    assert {"data_dir", "data_file", "scenes", "views", "image_size", "record_index", "interactive",
            "allow_outside_root"} <= \
        set(papermill.inspect_notebook(str(REPO / "notebooks" / "01_data_inspection.ipynb")))
    assert {"config_path", "run_dir", "max_steps", "overrides"} <= \
        set(papermill.inspect_notebook(str(REPO / "notebooks" / "03_debug_run.ipynb")))


def test_strip_removes_outputs_and_metadata(tmp_path):
    strip = _strip_module()
    nb = _load("01_data_inspection")
    nb["metadata"]["widgets"] = {"state": {}}
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.2"}
    code = next(c for c in nb["cells"] if c["cell_type"] == "code" and not c["metadata"])
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["/home/someone\n"]}]
    code["execution_count"] = 3
    code["metadata"] = {"scrolled": True}
    dirty = tmp_path / "nb.ipynb"
    dirty.write_text(json.dumps(nb))
    assert strip.needs_cleaning(dirty)
    assert strip.main(["--check", str(dirty)]) == 1
    assert strip.main([str(dirty)]) == 0
    assert not strip.needs_cleaning(dirty)
    cleaned = json.loads(dirty.read_text())
    assert cleaned == json.loads((REPO / "notebooks" / "01_data_inspection.ipynb").read_text())


def _git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout


def test_git_stages_notebooks_without_their_outputs(tmp_path):
    """Saving a notebook in JupyterLab writes its outputs into the file; git's clean filter (nbstripout's
    way: .gitattributes names it, make setup defines it) stages it stripped, so the outputs stay on disk,
    out of commits and out of ``git diff``. The committed notebooks have no outputs."""
    import shutil

    strip = _strip_module()
    assert "*.ipynb filter=strip-notebooks" in (REPO / ".gitattributes").read_text().splitlines()
    setup = (REPO / "Makefile").read_text().split("\nsetup:")[1].split("\n\n")[0]
    assert "scripts/strip_notebooks.py --install-filter" in setup
    # A fresh clone as make setup leaves it, and a notebook saved with outputs.
    repo = tmp_path / "clone"
    (repo / "scripts").mkdir(parents=True)
    (repo / "notebooks").mkdir()
    shutil.copy(REPO / "scripts" / "strip_notebooks.py", repo / "scripts")
    shutil.copy(REPO / ".gitattributes", repo)
    clean = (REPO / "notebooks" / "01_data_inspection.ipynb").read_text()
    (repo / "notebooks" / "01.ipynb").write_text(clean)
    _git(repo, "init", "-q")
    assert strip.install_filter(repo)
    assert _git(repo, "config", "filter.strip-notebooks.clean").strip() == strip.FILTER_COMMAND
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "notebooks")
    saved = json.loads(clean)
    code = next(c for c in saved["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["1.7 MB of figures\n"]}]
    code["execution_count"] = 7
    (repo / "notebooks" / "01.ipynb").write_text(json.dumps(saved, indent=1))
    assert _git(repo, "diff") == ""  # only outputs changed: nothing to commit
    _git(repo, "add", "notebooks/01.ipynb")
    assert _git(repo, "show", ":notebooks/01.ipynb") == clean
    assert "1.7 MB of figures" in (repo / "notebooks" / "01.ipynb").read_text()  # kept on disk
    # A change to a cell's source is staged, without the outputs beside it.
    code["source"] = ["print('changed')"]
    (repo / "notebooks" / "01.ipynb").write_text(json.dumps(saved, indent=1))
    _git(repo, "add", "notebooks/01.ipynb")
    staged = _git(repo, "show", ":notebooks/01.ipynb")
    assert "print('changed')" in staged and "figures" not in staged and not strip.needs_cleaning_text(staged)
    # What this repository has committed: no outputs (when it is a git clone; a source tarball is not).
    if (REPO / ".git").exists():
        for name in NOTEBOOKS:
            committed = json.loads(_git(REPO, "show", f"HEAD:notebooks/{name}.ipynb"))
            assert all(c.get("outputs", []) == [] for c in committed["cells"]), name


def test_jupyterlab_opens_without_a_build_request():
    """JupyterLab 4 is prebuilt: a source extension left in the environment's application folder
    (dash's, through open3d) made every page load ask for a rebuild. ``make setup`` removes it."""
    import subprocess
    import sys

    probe = "from jupyterlab.commands import build_check; print(build_check())"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "JUPYTERLAB_DIR"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", f"JupyterLab asks for a build: {result.stdout}"


def test_jupyterlab_does_not_offer_news():
    """JupyterLab's announcements plugin asks, in a pop-up that covers the notebook, whether to fetch
    Jupyter news; ``make setup`` disables it in this environment (so for ``jupyter lab`` and the
    browser test)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True,
                            text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "JUPYTERLAB_DIR"})
    listed = result.stdout + result.stderr
    assert result.returncode == 0, listed[-2000:]
    disabled = listed.split("Disabled extensions:")[-1] if "Disabled extensions:" in listed else ""
    assert "@jupyterlab/apputils-extension:announcements" in disabled, f"run make setup\n{listed}"


def _kernel_installed() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL in KernelSpecManager().find_kernel_specs()


@pytest.mark.slow
@pytest.mark.ci
def test_notebooks_execute_in_order(tmp_path):
    """01 generates the tiny synthetic set, 02 assembles the demo model and plans stage 1, 03 trains
    20 steps, 04 evaluates that run (with its views and with them removed) and builds the answer viewer, 05 pretrains
    the encoder's camera and depth heads for 20 steps and draws a room; every cell must run without error.
    Paths are relative to a temporary working folder."""
    import papermill

    assert _kernel_installed(), f"no Jupyter kernel '{KERNEL}': run make setup " \
                                f"(python -m ipykernel install --sys-prefix --name {KERNEL})"
    configs = REPO / "configs"
    extra = {"02_model_assembly": {"config_path": str(configs / "first_demo.yaml"),
                                   "plan_config": str(configs / "stage1_3d.yaml")},
             "03_debug_run": {"config_path": str(configs / "first_demo.yaml")},
             "05_geometry_heads": {"config_path": str(configs / "camera_depth_heads.yaml")}}
    executed = {}
    for name in NOTEBOOKS:
        out = tmp_path / f"{name}.out.ipynb"
        papermill.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out), kernel_name=KERNEL,
                                   parameters={"work_dir": str(tmp_path), **extra.get(name, {})},
                                   cwd=str(tmp_path), progress_bar=False)
        executed[name] = json.loads(out.read_text())

    def mimetypes(name):
        return {m for c in executed[name]["cells"] for o in c.get("outputs", []) for m in o.get("data", {})}

    def text(name):
        parts = []
        for c in executed[name]["cells"]:
            for o in c.get("outputs", []):
                parts += o.get("text", []) if isinstance(o.get("text"), list) else [o.get("text", "")]
                parts += o.get("data", {}).get("text/plain", [])
        return "".join(parts)

    # No library banners in any output: open3d's WebVisualizer / WebRTC lines, DeepSpeed's accelerator warning.
    for name in NOTEBOOKS:
        assert not re.search(r"WebVisualizer|WebRTC|Setting accelerator", text(name)), name
    # 01: the interactive pose figure, static figures, tables.
    assert {"application/vnd.plotly.v1+json", "image/png", "text/html"} <= mimetypes("01_data_inspection")
    assert (tmp_path / "data" / "synth_nb" / "train.jsonl").is_file()
    # 01 on photos without poses, kept outside the records' folder: the allow_outside_root parameter
    # lets them in, the pose cells say there is nothing to place in 3D, and with interactive = False
    # the static pose figure (the layout only) appears once.
    source = json.loads((tmp_path / "data" / "synth_nb" / "val.jsonl").read_text().splitlines()[0])
    bare = {k: source[k] for k in ("id", "scene_id", "question", "answer", "qtype")}
    bare["images"] = [str(tmp_path / "data" / "synth_nb" / p) for p in source["images"]]
    (tmp_path / "phone").mkdir()
    (tmp_path / "phone" / "bare.jsonl").write_text(json.dumps(bare) + "\n")
    out = tmp_path / "01_bare.out.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "01_data_inspection.ipynb"), str(out), kernel_name=KERNEL,
                               parameters={"work_dir": str(tmp_path), "data_file": "phone/bare.jsonl",
                                           "allow_outside_root": True, "interactive": False},
                               cwd=str(tmp_path), progress_bar=False)
    cells = {c["id"]: c for c in json.loads(out.read_text())["cells"]}
    pose_outputs = cells["01-08"]["outputs"] + cells["01-10"]["outputs"]
    said = "".join("".join(o.get("text", [])) for o in pose_outputs)
    assert f"{bare['id']}: its views have no camera poses (geom_token is null)" in said
    assert sum("image/png" in o.get("data", {}) for o in pose_outputs) == 1
    # 02: parameters, shapes, and the stage-1 plan.
    assert re.search(r"batch_size_per_gpu \d+ x grad_accum \d+ x 8 GPU", text("02_model_assembly"))
    # 03: a finished run with checkpoints and a final model.
    run = tmp_path / "runs" / "nb_debug"
    assert (run / "final" / "trainable.safetensors").is_file()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 20
    assert "checkpoints: ['step_000010', 'step_000020']" in text("03_debug_run")
    # 04: predictions and metrics of the model with its views and with them removed, in the notebook's
    # own folder (never the run's eval/ of `vqkit eval`), and the live viewer widget.
    results = run / "eval_notebook"
    for folder in ("with_views", "views_removed"):
        assert (results / folder / "predictions.jsonl").is_file() and (results / folder / "metrics.json").is_file()
    assert json.loads((results / "views_removed" / "metrics.json").read_text())["info"]["blind"] is True
    assert not (run / "eval").exists()
    # The first 16 validation questions come from 3 rooms: stepping through the viewer changes rooms.
    rows = [json.loads(line) for line in (results / "with_views" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and len({r["scene_id"] for r in rows}) == 3
    assert "application/vnd.jupyter.widget-view+json" in mimetypes("04_evaluation")
    # A Stage 1 model (questions only) is not asked for Stage 2 layouts; the cell says why.
    assert "runs/nb_debug is a Stage 1 model (trained on questions, no layouts)" in text("04_evaluation")
    assert not (results / "roomplan").exists()
    # 05: a pretrained encoder in the official layout, its errors beside the untrained ones, two figures.
    assert (tmp_path / "runs" / "nb_encoder" / "encoder" / "model.safetensors").is_file()
    assert re.search(r"rotation error \(median, deg\)\s+[\d.]+\s+[\d.]+", text("05_geometry_heads"))
    assert sum("image/png" in o.get("data", {}) for c in executed["05_geometry_heads"]["cells"]
               for o in c.get("outputs", [])) >= 2
