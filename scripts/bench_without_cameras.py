"""How a model answers about photos without cameras: the benchmark of the demo's promise to serve them.

Two measurements on the synthetic validation rooms, each as a user would run it:

1. ``vqkit eval`` on the validation records as they are (with cameras) and with every ``geom_token``
   removed (written to ``OUT/val_without_cameras.jsonl``; the images stay where they are, found through
   ``data.image_root``): EM overall and per qtype, side by side, and what ``vqkit eval`` said about the
   records without geometry.
2. ``vqkit ask`` on the photos of the first ``--rooms`` validation rooms, copied into ``OUT/photos/ROOM/``
   without their ``cameras.json``, asked each room's ``--qtype`` question (room_colour: "What colour is
   the floor?"): how many answers are right (the official EM: the answer among the references), and
   what ``vqkit ask`` said about the missing cameras.

    .venv/bin/python scripts/bench_without_cameras.py --model runs/demo/final --out runs/demo/without_cameras

Writes ``OUT/summary.json`` and prints both tables. Run it under the CPU lock on a shared machine: the two
evaluations and the asks take a few CPU-minutes for the demo model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from vqkit.eval.metrics import exact_match


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def vqkit(*args: str) -> subprocess.CompletedProcess:
    """``vqkit ARGS`` in this interpreter (the same environment), output captured; a failure stops the run."""
    done = subprocess.run([sys.executable, "-m", "vqkit", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"vqkit {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done


def evaluate(model: str, data: Path, out: Path, image_root: Path) -> tuple[dict, list[str]]:
    """``vqkit eval`` of ``data`` into ``out``: (metrics, the lines it printed on stderr that say something)."""
    done = vqkit("eval", "--model", model, "--data", str(data), "--out", str(out), "--overwrite",
                 "--no-language-metrics", "--set", f"data.image_root={image_root}")
    said = [line for line in done.stderr.splitlines() if line.startswith("vqkit eval: ")]
    return json.loads((out / "metrics.json").read_text()), said


def without_cameras(records: list[dict], out: Path) -> Path:
    """The records with every geom_token removed, written to ``out``."""
    out.write_text("".join(json.dumps({**r, "geom_token": None}) + "\n" for r in records))
    return out


def ask_rooms(model: str, records: list[dict], data_dir: Path, photos: Path, rooms: int, qtype: str) -> list[dict]:
    """``vqkit ask`` about the copied photos (no cameras.json) of the first ``rooms`` rooms with a ``qtype``
    question: one row per room (question, answer, references, right, notes)."""
    rows, seen = [], set()
    for rec in records:
        if rec.get("qtype") != qtype or rec["scene_id"] in seen:
            continue
        seen.add(rec["scene_id"])
        folder = photos / rec["scene_id"]
        folder.mkdir(parents=True, exist_ok=True)
        copies = []
        for image in rec["images"]:
            copies.append(folder / Path(image).name)
            shutil.copyfile(data_dir / image, copies[-1])
        assert not (folder / "cameras.json").exists()
        done = vqkit("ask", "--model", model, "--images", *map(str, copies), "--question", rec["question"])
        answer = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        references = rec.get("answers") or [rec["answer"]]
        rows.append({"scene_id": rec["scene_id"], "question": rec["question"], "answer": answer,
                     "references": references, "right": exact_match(answer, references),
                     "notes": [line for line in done.stderr.splitlines() if line.startswith("vqkit ask: note:")]})
        if len(rows) == rooms:
            break
    return rows


def table(with_cameras: dict, without: dict) -> str:
    lines = [f"{'qtype':<20}{'n':>6}{'EM with cameras':>17}{'EM without':>12}", "-" * 55]
    rows = [("overall", with_cameras["overall"], without["overall"])]
    rows += [(q, with_cameras["by_qtype"][q], without["by_qtype"].get(q, {})) for q in sorted(with_cameras["by_qtype"])]
    for name, a, b in rows:
        lines.append(f"{name:<20}{a['n']:>6}{a['em']:>17.1f}{b.get('em', 0):>12.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/demo/final", help="model folder (default: %(default)s)")
    parser.add_argument("--data-dir", default="data/synth", help="the synthetic rooms (default: %(default)s)")
    parser.add_argument("--out", required=True, help="output folder (replaced files: its own)")
    parser.add_argument("--rooms", type=int, default=30, help="rooms asked about without cameras (default 30)")
    parser.add_argument("--qtype", default="room_colour", help="the question asked of each room (default: %(default)s)")
    parser.add_argument("--skip-eval", action="store_true", help="only the asks")
    args = parser.parse_args(argv)
    data_dir, out = Path(args.data_dir).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = read_records(data_dir / "val.jsonl")
    summary: dict = {"model": args.model, "data": str(data_dir / "val.jsonl")}

    if not args.skip_eval:
        with_cameras, said_with = evaluate(args.model, data_dir / "val.jsonl", out / "eval_with_cameras", data_dir)
        bare = without_cameras(records, out / "val_without_cameras.jsonl")
        without, said_without = evaluate(args.model, bare, out / "eval_without_cameras", data_dir)
        summary.update(with_cameras={"overall": with_cameras["overall"], "by_qtype": with_cameras["by_qtype"]},
                       without_cameras={"overall": without["overall"], "by_qtype": without["by_qtype"]},
                       eval_said={"with_cameras": said_with, "without_cameras": said_without})
        print(table(with_cameras, without))
        for line in said_without:
            print(line)

    rows = ask_rooms(args.model, records, data_dir, out / "photos", args.rooms, args.qtype)
    right = sum(r["right"] for r in rows)
    summary["ask"] = {"qtype": args.qtype, "rooms": len(rows), "right": right, "rows": rows}
    print(f"\nvqkit ask on the photos of {len(rows)} val rooms without cameras ({args.qtype}): {right} of "
          f"{len(rows)} right")
    if rows:
        print("its note, first room:", *rows[0]["notes"], sep="\n  ")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
