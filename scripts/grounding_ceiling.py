"""How close a grounding model's box centre must be: Acc@k of the category's mean size at the gold centre
moved by a given distance, beside the centre errors of evaluated runs.

    .venv/bin/python scripts/grounding_ceiling.py --data-dir data/synth \
        --predictions runs/grounding_demo/eval/predictions.jsonl runs/grounding_demo/blind/eval/predictions.jsonl

The first table answers every val expression with the gold centre moved ``d`` metres on the floor (a
seeded random direction) and rounded to 10 cm, the mean size of its category's training boxes, and either
that category's commonest yaw or the gold yaw: what a model that knows only the category's size scores
when it places the object within ``d``. The second gives, per predictions file of ``vqkit eval`` (or
``vqkit demo --task grounding``), its Acc@0.25 and the distribution of its boxes' centre error on the floor.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np

from vqkit.data.schema import load_records
from vqkit.eval.results import read_predictions
from vqkit.roomplan.grounding import box_from_dict, category_mean_boxes, score_grounding

STEP_M = 0.1  # the grounding recipe's data.box_step_cm


def read_boxes(path: Path) -> list:
    """The gold boxes (scene frame) of a grounding records file, read and validated as training reads them."""
    return [r.box for r in load_records(str(path), check_files=False) if r.box is not None]


def ceiling_table(train: list, val: list, distances: list[float], seed: int) -> None:
    means = category_mean_boxes(train)
    print("centre off by | Acc@0.25 (mean yaw) | Acc@0.5 (mean yaw) | Acc@0.25 (gold yaw) | Acc@0.5 (gold yaw)")
    for d in distances:
        rng = np.random.default_rng(seed)
        angles = rng.uniform(0.0, 2 * math.pi, size=len(val))
        row = []
        for gold_yaw in (False, True):
            predicted = []
            for gold, angle in zip(val, angles, strict=True):
                mean = means[gold.category]
                centre = (gold.center[0] + d * math.cos(angle), gold.center[1] + d * math.sin(angle), gold.center[2])
                predicted.append(dataclasses.replace(mean, center=tuple(round(v / STEP_M) * STEP_M for v in centre),
                                                     yaw=gold.yaw if gold_yaw else mean.yaw))
            scores = score_grounding(predicted, val)
            row += [scores["acc@0.25"], scores["acc@0.5"]]
        print(f"{d:.2f} m | " + " | ".join(f"{v:.1f}" for v in row))


def centre_errors(path: Path) -> None:
    errors, predicted, gold = [], [], []
    for row in read_predictions(path):
        truth = box_from_dict(row["box"])
        guess = box_from_dict(row["pred_box"]) if row.get("pred_box") else None
        gold.append(truth)
        predicted.append(guess)
        errors.append(math.dist(guess.center[:2], truth.center[:2]) if guess is not None else math.inf)
    errors = np.array(errors)
    scores = score_grounding(predicted, gold)
    quartiles = ", ".join(f"{np.percentile(errors, q):.2f}" for q in (25, 50, 75))
    print(f"{path}: Acc@0.25 {scores['acc@0.25']:.1f}; centre error on the floor (m) quartiles {quartiles}; "
          f"within 0.3 m {100 * np.mean(errors <= 0.3):.1f}%, within 0.5 m {100 * np.mean(errors <= 0.5):.1f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("data/synth"))
    p.add_argument("--distances", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5, 1.0])
    p.add_argument("--predictions", type=Path, nargs="*", default=[])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    train = read_boxes(args.data_dir / "grounding_train.jsonl")
    val = read_boxes(args.data_dir / "grounding_val.jsonl")
    ceiling_table(train, val, args.distances, args.seed)
    for path in args.predictions:
        centre_errors(path)


if __name__ == "__main__":
    main()
