"""The synthetic posed-room benchmark: ``vqkit synth --out DIR --scenes N --views V --image-size S --seed K``.

Each scene is a random rectangular or L-shaped room (walls, floor, ceiling, doors and windows cut
into the walls) furnished with RoomPlan object categories built from a few boxes each, in colours
from a small named palette; walls and floor tiles are painted from palettes of their own
(:mod:`~vqkit.synth.catalogue`, :mod:`~vqkit.synth.rooms`). V cameras at eye height look into the room
like a person scanning with a phone; RGB and depth are ray cast on the CPU (:mod:`~vqkit.synth.scene`,
:mod:`~vqkit.synth.render`); questions with short one-word answers come from the layout
(:mod:`~vqkit.synth.questions`); the RoomPlan layout of each scene is the Stage 2 target.

Output (docs/design.md, "The synthetic benchmark")::

    DIR/{train,val,test}.jsonl            questions (task "synth"), one record per question
    DIR/roomplan_{train,val,test}.jsonl   one record per scene (task "roomplan")
    DIR/grounding_{train,val,test}.jsonl  with ``grounding``: referring expressions and their boxes (task
                                          "grounding", :mod:`~vqkit.synth.grounding`); grounding_stats.json
    DIR/scenes/<scene_id>/rgb_XX.png, depth_XX.png (uint16 mm), semantic_XX.png (uint8 class index into
                                          stats.json's semantic_classes, 255 = nothing), layout.json,
                                          cameras.json
    DIR/stats.json                        counts per qtype, blind majority-answer EM, timings
    DIR/tokenizer/                        small tokenizer trained on the train split's text

Everything in a scene derives from ``numpy.random.SeedSequence([seed, scene_index])``, so the output
does not depend on the number of worker processes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vqkit import cameras as geo
from vqkit.errors import ConfigError
from vqkit.roomplan import ROOMPLAN_QUESTION, Room
from vqkit.roomplan.grounding import GROUNDING_TASK, box_to_dict, grounding_question
from vqkit.synth.catalogue import CATEGORIES, COLOURS, FLOOR_PALETTE, SEMANTIC_CLASSES, WALL_PALETTE
from vqkit.synth.grounding import scene_expressions
from vqkit.synth.questions import DESCRIBE_QTYPE, describe_objects, scene_questions
from vqkit.synth.render import RENDER_SCALE
from vqkit.synth.scene import make_scene, room_from_layout
from vqkit.tokenizer import train_tokenizer
from vqkit.utils.files import iter_jsonl, write_json_atomic, write_jsonl_atomic
from vqkit.utils.open3d import import_open3d
from vqkit.vggt.semantic_head import UNLABELLED

# Bumped whenever the same arguments would generate different rooms or questions, so a folder made
# by an older generator is never silently reused (vqkit demo regenerates it).
GENERATOR_VERSION = 3  # 3: per-pixel semantic maps (records' "semantics")

# Bumped whenever the same rooms would get other grounding expressions (their files are then rewritten).
GROUNDING_VERSION = 1
GROUNDING_STATS = "grounding_stats.json"

SPLITS = ("train", "val", "test")
# Questions per room: every val and test room's (the benchmark), and the training rooms' by default.
QUESTIONS_PER_SCENE = 8
# zlib level of the PNGs (lossless at any level): 1, as OpenCV writes them, encodes a scene's 12
# images much faster than PIL's default 6, for somewhat larger files.
PNG_LEVEL = 1


def _write_scene(job: tuple) -> dict:
    """Worker: sample, render and write one scene; return what the records need (no pixels)."""
    out_dir, seed, index, views, size, render_scale, l_shape_prob, qps, describe, image_format, nthreads = job
    t0 = time.perf_counter()
    sc = make_scene(seed, index, views, size, render_scale, l_shape_prob, nthreads)
    t_render = time.perf_counter() - t0
    layout, cameras = sc["layout"], sc["cameras"]
    sid = layout["scene_id"]
    folder = Path(out_dir) / "scenes" / sid
    folder.mkdir(parents=True, exist_ok=True)
    nbytes = 0
    for v, cam in enumerate(cameras):
        rgb_name, depth_name = f"rgb_{v:02d}.{image_format}", f"depth_{v:02d}.png"
        semantic_name = f"semantic_{v:02d}.png"
        img = Image.fromarray(sc["rgb"][v])
        if image_format == "jpg":
            img.save(folder / rgb_name, quality=95)
        else:
            img.save(folder / rgb_name, compress_level=PNG_LEVEL)
        Image.fromarray(geo.metres_to_depth_png(sc["depth"][v])).save(folder / depth_name, compress_level=PNG_LEVEL)
        Image.fromarray(sc["semantics"][v]).save(folder / semantic_name, compress_level=PNG_LEVEL)
        cam["image"] = f"scenes/{sid}/{rgb_name}"
        cam["depth"] = f"scenes/{sid}/{depth_name}"
        cam["semantics"] = f"scenes/{sid}/{semantic_name}"
    (folder / "layout.json").write_text(json.dumps(layout, indent=1))
    (folder / "cameras.json").write_text(json.dumps(cameras, indent=1))
    nbytes = sum(f.stat().st_size for f in folder.iterdir())
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1]))
    questions = scene_questions(layout, cameras, CATEGORIES, COLOURS, rng, qps)
    if describe:  # after the drawn questions, so they and their ids stay as they were
        questions.append(describe_objects(layout, CATEGORIES))
    return {"scene_id": sid, "layout": layout, "cameras": cameras, "questions": questions,
            "bytes": nbytes, "render_s": t_render, "total_s": time.perf_counter() - t0}


def split_scenes(n: int, seed: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[int]]:
    """Scene indices per split: a seeded permutation cut by ``fractions`` (val/test get at least one
    scene each once there are 3 scenes). No scene is in two splits."""
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 7919])).permutation(n)
    n_val = int(round(fractions[1] * n)) if n >= 3 else 0
    n_test = int(round(fractions[2] * n)) if n >= 3 else 0
    if n >= 3:
        n_val, n_test = max(n_val, 1 if fractions[1] > 0 else 0), max(n_test, 1 if fractions[2] > 0 else 0)
    val, test = perm[:n_val], perm[n_val:n_val + n_test]
    train = perm[n_val + n_test:]
    return {"train": sorted(train.tolist()), "val": sorted(val.tolist()), "test": sorted(test.tolist())}


def _geom_token(cameras: list[dict]) -> dict:
    return {"R": [c["R"] for c in cameras], "t": [c["t"] for c in cameras], "K": [c["K"] for c in cameras],
            "depth_hist": [c["depth_hist"] for c in cameras]}


def question_records(scene: dict) -> list[dict]:
    """Stage 1 records (docs/design.md, "Records") of one scene."""
    cams = scene["cameras"]
    base = {"scene_id": scene["scene_id"], "task": "synth", "images": [c["image"] for c in cams],
            "depths": [c["depth"] for c in cams], "semantics": [c["semantics"] for c in cams],
            "geom_token": _geom_token(cams)}
    out = []
    for k, q in enumerate(scene["questions"]):
        rec = {"id": f"{scene['scene_id']}_q{k:02d}", **base, "qtype": q["qtype"], "question": q["question"],
               "answer": q["answer"], "answers": [q["answer"]]}
        if "situation" in q:
            rec["situation"] = q["situation"]
        out.append(rec)
    return out


def roomplan_record(scene: dict) -> dict:
    """Stage 2 record of one scene: the CapturedRoom dict of its layout."""
    cams = scene["cameras"]
    return {"id": f"{scene['scene_id']}_roomplan", "scene_id": scene["scene_id"], "task": "roomplan",
            "images": [c["image"] for c in cams], "depths": [c["depth"] for c in cams],
            "semantics": [c["semantics"] for c in cams], "geom_token": _geom_token(cams), "question": ROOMPLAN_QUESTION,
            "roomplan": room_from_layout(scene["layout"]).to_capturedroom()}


def grounding_records(scene_id: str, index: int, seed: int, layout: dict, cameras: list[dict]) -> list[dict]:
    """The grounding records of one room (:func:`vqkit.synth.grounding.scene_expressions`), drawn from
    their own stream of (seed, room index), so the other files do not change."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 2]))
    base = {"scene_id": scene_id, "task": GROUNDING_TASK, "images": [c["image"] for c in cameras],
            "depths": [c["depth"] for c in cameras], "semantics": [c["semantics"] for c in cameras],
            "geom_token": _geom_token(cameras)}
    return [{"id": f"{scene_id}_g{k:02d}", **base, "qtype": item["qtype"],
             "question": grounding_question(item["description"]), "description": item["description"],
             "relation": item["relation"], "object_id": item["object_id"], "box": box_to_dict(item["box"])}
            for k, item in enumerate(scene_expressions(layout, cameras, CATEGORIES, rng))]


def add_grounding(data_dir: str | os.PathLike) -> dict:
    """Write ``DIR/grounding_{train,val,test}.jsonl`` for the rooms of a generated set (read from its
    ``roomplan_<split>.jsonl`` and each room's ``layout.json`` and ``cameras.json``; no other file is
    touched), then ``grounding_stats.json`` (counts per split, subset and relation); returns the stats."""
    root = Path(data_dir)
    stats = json.loads((root / "stats.json").read_text())
    seed = stats["args"]["seed"]
    counts: dict[str, dict] = {}
    remove_grounding(root)
    for split in stats["args"].get("splits", SPLITS):  # the splits the set holds
        records = []
        for _, room in iter_jsonl(root / f"roomplan_{split}.jsonl"):
            folder = root / "scenes" / room["scene_id"]
            layout = json.loads((folder / "layout.json").read_text())
            cameras = json.loads((folder / "cameras.json").read_text())
            records += grounding_records(room["scene_id"], layout["index"], seed, layout, cameras)
        write_jsonl_atomic(root / f"grounding_{split}.jsonl", records)
        counts[split] = {"n": len(records), "by_qtype": dict(sorted(Counter(r["qtype"] for r in records).items())),
                         "by_relation": dict(sorted(Counter(r["relation"] for r in records).items()))}
    out = {"grounding_version": GROUNDING_VERSION, "seed": seed, "splits": counts}
    write_json_atomic(root / GROUNDING_STATS, out)  # last: its presence marks complete grounding files
    return out


def remove_grounding(data_dir: str | os.PathLike) -> None:
    """Remove a set's grounding files (their stats file first: its presence marks complete files)."""
    root = Path(data_dir)
    (root / GROUNDING_STATS).unlink(missing_ok=True)
    for split in SPLITS:
        (root / f"grounding_{split}.jsonl").unlink(missing_ok=True)


def has_grounding(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` holds this generator version's grounding files."""
    path = Path(data_dir) / GROUNDING_STATS
    try:
        return json.loads(path.read_text()).get("grounding_version") == GROUNDING_VERSION
    except (OSError, ValueError):
        return False


def blind_baselines(train: list[dict], heldout: list[dict]) -> dict:
    """EM of text-only guessers on ``heldout``, per qtype: the train split's majority answer of the
    qtype, and the stronger per-question-text majority (falling back to the qtype's)."""
    by_qtype: dict[str, Counter] = defaultdict(Counter)
    by_text: dict[tuple, Counter] = defaultdict(Counter)
    for r in train:
        by_qtype[r["qtype"]][r["answer"]] += 1
        by_text[(r.get("situation"), r["question"])][r["answer"]] += 1
    hits_q, hits_t, n = Counter(), Counter(), Counter()
    for r in heldout:
        qt = r["qtype"]
        maj = by_qtype[qt].most_common(1)[0][0] if by_qtype[qt] else ""
        text = by_text.get((r.get("situation"), r["question"]))
        maj_t = text.most_common(1)[0][0] if text else maj
        n[qt] += 1
        hits_q[qt] += r["answer"] == maj
        hits_t[qt] += r["answer"] == maj_t
    out = {qt: {"n": n[qt], "majority_answer": by_qtype[qt].most_common(1)[0][0] if by_qtype[qt] else None,
                "majority_em": round(100.0 * hits_q[qt] / n[qt], 2),
                "question_majority_em": round(100.0 * hits_t[qt] / n[qt], 2)} for qt in sorted(n)}
    total = sum(n.values())
    if total:
        out["all"] = {"n": total, "majority_em": round(100.0 * sum(hits_q.values()) / total, 2),
                      "question_majority_em": round(100.0 * sum(hits_t.values()) / total, 2)}
    return out


def generate(out_dir: str | os.PathLike, scenes: int = 100, views: int = 4, image_size: int = 112,
             seed: int = 0, workers: int | None = None, render_scale: int = RENDER_SCALE,
             questions_per_scene: int = QUESTIONS_PER_SCENE, l_shape_prob: float = 0.3, image_format: str = "png",
             split_fractions=(0.8, 0.1, 0.1), tokenizer: bool = True, vocab_size: int = 1024,
             progress: bool = True, train_questions_per_scene: int | None = None,
             train_describe: bool = False, splits: Sequence[str] = SPLITS, grounding: bool = False) -> dict:
    """Generate the synthetic benchmark into ``out_dir`` and return its stats (also in stats.json).

    Deterministic for ``seed``: the JSONL files are byte-identical for the same arguments whatever
    ``workers`` is. ``workers`` defaults to min(2, cpu count); each scene is an independent job.
    ``train_questions_per_scene`` (default: ``questions_per_scene``) asks more of the training rooms
    only: a training room's questions begin with those ``questions_per_scene`` gives, and the val and
    test splits (the benchmark) do not change. ``train_describe`` adds to every training room, after
    those, the ``describe`` question (:func:`vqkit.synth.questions.describe_objects`: every category
    the views show, with its colour and count), again leaving val and test as they are.

    ``splits`` (train and any of val, test; default all three) are the splits written: the rooms of
    the others are not rendered, and their record files are removed. The rooms are still assigned
    to splits over all ``scenes`` and each derives from its own seed, so a split's files are
    byte-identical to those of a run that writes every split.

    ``grounding`` adds the grounding files of those splits (:func:`add_grounding`); every other file
    stays byte for byte what it is without them.
    """
    train_qps = questions_per_scene if train_questions_per_scene is None else train_questions_per_scene
    _check_arguments(scenes, views, image_size, render_scale, image_format, questions_per_scene, train_qps,
                     split_fractions, splits)
    splits = tuple(s for s in SPLITS if s in splits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_grounding(out)  # an earlier set's grounding questions would not match these rooms
    assignment = split_scenes(scenes, seed, split_fractions)
    rendered = sorted(i for s in splits for i in assignment[s])
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    workers = min(workers, len(rendered))
    nthreads = 1 if workers > 1 else 0
    train = set(assignment["train"])
    jobs = [(str(out), seed, i, views, image_size, render_scale, l_shape_prob,
             train_qps if i in train else questions_per_scene, train_describe and i in train, image_format, nthreads)
            for i in rendered]

    t0 = time.perf_counter()
    results = dict(zip(rendered, _render_scenes(jobs, workers, progress), strict=True))
    t_scenes = time.perf_counter() - t0

    records = {s: [r for i in assignment[s] for r in question_records(results[i])] for s in splits}
    roomplan = {s: [roomplan_record(results[i]) for i in assignment[s]] for s in splits}
    for s in SPLITS:
        for name in (f"{s}.jsonl", f"roomplan_{s}.jsonl"):
            if s in splits:
                write_jsonl_atomic(out / name, records[s] if name == f"{s}.jsonl" else roomplan[s])
            else:  # an earlier set's split would no longer match these rooms
                (out / name).unlink(missing_ok=True)

    t_tok = 0.0
    if tokenizer:
        t1 = time.perf_counter()
        train_tokenizer(tokenizer_texts(records["train"], roomplan["train"]), out / "tokenizer", vocab_size=vocab_size)
        t_tok = time.perf_counter() - t1

    stats = _stats(records, list(results.values()), assignment)
    stats["args"] = {"scenes": scenes, "views": views, "image_size": image_size, "seed": seed, "workers": workers,
                     "render_scale": render_scale, "questions_per_scene": questions_per_scene,
                     "train_questions_per_scene": train_qps, "train_describe": train_describe,
                     "l_shape_prob": l_shape_prob, "image_format": image_format, "splits": list(splits)}
    stats["timings"] = {"scenes_s": round(t_scenes, 3), "scenes_per_s": round(len(jobs) / t_scenes, 3),
                        "views_per_s": round(len(jobs) * views / t_scenes, 2),
                        "render_s_per_scene": round(float(np.mean([r["render_s"] for r in results.values()])), 5),
                        "tokenizer_s": round(t_tok, 3), "total_s": round(time.perf_counter() - t0, 3)}
    write_json_atomic(out / "stats.json", _ordered_stats(stats))  # its presence marks a complete set
    if grounding:
        add_grounding(out)
    return _ordered_stats(stats)


def _check_arguments(scenes, views, image_size, render_scale, image_format, questions_per_scene, train_qps,
                     split_fractions, splits) -> None:
    """:func:`generate`'s arguments, each wrong one a one-line ConfigError."""
    if scenes < 1 or views < 1:
        raise ConfigError(f"vqkit synth: --scenes and --views must be >= 1 (got {scenes}, {views})")
    if image_size < 16 or render_scale < 1:
        raise ConfigError(f"vqkit synth: --image-size must be >= 16 and --render-scale >= 1 "
                          f"(got {image_size}, {render_scale})")
    if image_format not in ("png", "jpg"):
        raise ConfigError(f"vqkit synth: --image-format must be png or jpg, got {image_format!r}")
    if questions_per_scene < 1 or train_qps < 1:
        raise ConfigError(f"vqkit synth: --questions-per-scene and --train-questions-per-scene must be >= 1 "
                          f"(got {questions_per_scene}, {train_qps})")
    if len(split_fractions) != 3 or abs(sum(split_fractions) - 1) > 1e-6 or min(split_fractions) < 0:
        raise ConfigError(f"vqkit synth: split fractions must be 3 non-negative numbers summing to 1, "
                          f"got {split_fractions}")
    if "train" not in splits or not set(splits) <= set(SPLITS):
        raise ConfigError(f"vqkit synth: the splits to write are train and any of val, test; got {list(splits)}")


def format_summary(stats: dict, out_dir: str | os.PathLike) -> str:
    """:func:`generate`'s stats in one line: rooms, questions, speed and the blind majority baseline (and
    a second line naming the grounding files when the set has them)."""
    t = stats["timings"]
    line = (f"vqkit synth: {stats['args']['scenes']} scenes, {sum(stats['questions'].values())} questions in "
            f"{out_dir} ({t['scenes_per_s']} scenes/s); blind majority EM "
            f"{stats['blind'].get('all', {}).get('majority_em')}")
    if has_grounding(out_dir):
        line += (f"\nvqkit synth: grounding questions in {out_dir}/grounding_<split>.jsonl (counts: "
                 f"{out_dir}/{GROUNDING_STATS})")
    return line


def _render_scenes(jobs: list[tuple], workers: int, progress: bool) -> list[dict]:
    """Every scene of ``jobs`` rendered and written, in job order (one process, or a pool)."""
    from tqdm.auto import tqdm

    results: list[dict] = []
    bar = tqdm(total=len(jobs), desc="vqkit synth", unit="scene", disable=not progress)
    if workers == 1:
        for job in jobs:
            results.append(_write_scene(job))
            bar.update()
    else:
        # fork: workers inherit the imported modules (open3d takes seconds to import).
        import_open3d()
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            for res in pool.imap(_write_scene, jobs, chunksize=4):
                results.append(res)
                bar.update()
    bar.close()
    return results


def tokenizer_texts(train: list[dict], roomplan_train: list[dict]) -> list[str]:
    """What the small tokenizer is trained on: the train split's questions, answers, situations and
    layout texts, and every answer word."""
    texts = []
    for r in train:
        texts += [r["question"], r["answer"]] + ([r["situation"]] if "situation" in r else [])
    texts += [ROOMPLAN_QUESTION] + [Room.from_capturedroom(r["roomplan"]).to_text() for r in roomplan_train]
    texts += COLOURS + list(WALL_PALETTE) + list(FLOOR_PALETTE)  # every answer word
    texts += [w for pair in CATEGORIES.values() for w in pair]
    texts += [str(i) for i in range(10)] + ["yes", "no", "left", "right"]
    return texts


_STATS_ORDER = ("generator_version", "args", "scenes", "questions", "questions_per_qtype", "answers_per_qtype",
                "blind", "blind_evaluated_on", "semantic_classes", "objects_per_scene", "bytes_per_scene", "timings")


def _ordered_stats(stats: dict) -> dict:
    return {k: stats[k] for k in _STATS_ORDER}


def _stats(records: dict, results: list[dict], assignment: dict) -> dict:
    """Counts per written split (``records``' keys) and qtype, answer distributions and the text-only
    baselines."""
    heldout_splits = [s for s in ("val", "test") if records.get(s)]
    heldout = [r for s in heldout_splits for r in records[s]] or records["train"]
    answers = defaultdict(Counter)
    for rows in records.values():
        for r in rows:
            if r["qtype"] != DESCRIBE_QTYPE:  # a room's own list, not an answer class
                answers[r["qtype"]][r["answer"]] += 1
    return {
        "generator_version": GENERATOR_VERSION,
        "scenes": {s: len(assignment[s]) for s in records},
        "questions": {s: len(rows) for s, rows in records.items()},
        "questions_per_qtype": {s: dict(sorted(Counter(r["qtype"] for r in rows).items()))
                                for s, rows in records.items()},
        "answers_per_qtype": {qt: dict(c.most_common()) for qt, c in sorted(answers.items())},
        "blind": blind_baselines(records["train"], heldout),
        "blind_evaluated_on": "+".join(heldout_splits) or "train",
        "semantic_classes": {"names": SEMANTIC_CLASSES, "unlabelled": UNLABELLED},
        "objects_per_scene": round(float(np.mean([len(r["layout"]["objects"]) for r in results])), 3),
        "bytes_per_scene": int(np.mean([r["bytes"] for r in results])),
    }


def ensure_synth(data_dir: str | os.PathLike, *, scenes: int, views: int, image_size: int, seed: int,
                 train_questions_per_scene: int = QUESTIONS_PER_SCENE, render_scale: int = RENDER_SCALE,
                 train_describe: bool = False, splits: Sequence[str] = SPLITS, grounding: bool = False,
                 progress: bool = True) -> dict:
    """Generate the synthetic set unless ``data_dir`` already holds one made with these arguments by
    this generator version, with at least ``splits`` (then its stats are returned and nothing is
    written); a set made with other arguments is regenerated in place, saying which differ. Val and
    test rooms always get :data:`QUESTIONS_PER_SCENE` questions, ``train_questions_per_scene`` is the
    training rooms', ``train_describe`` adds the training rooms' ``describe`` question, and only
    ``splits`` are rendered (:func:`generate`). ``grounding``: the set's grounding files too, added to
    a reused set that lacks them (:func:`add_grounding`)."""
    data_dir = Path(data_dir)
    stats_file = data_dir / "stats.json"
    if stats_file.is_file():
        stats = json.loads(stats_file.read_text())
        args = stats.get("args", {})
        want = {"scenes": scenes, "views": views, "image_size": image_size, "seed": seed,
                "questions_per_scene": QUESTIONS_PER_SCENE, "train_questions_per_scene": train_questions_per_scene,
                "render_scale": render_scale, "train_describe": train_describe}
        # A set written before a field was recorded was made with that field's default.
        defaults = {"questions_per_scene": QUESTIONS_PER_SCENE, "render_scale": RENDER_SCALE, "train_describe": False}
        have = {k: args.get(k, defaults.get(k)) for k in want}
        have["train_questions_per_scene"] = args.get("train_questions_per_scene", have["questions_per_scene"])
        have_splits = args.get("splits", list(SPLITS))  # a set written before splits were chosen has all
        if (have == want and set(splits) <= set(have_splits)
                and stats.get("generator_version") == GENERATOR_VERSION):
            print(f"reusing the synthetic rooms in {data_dir}", flush=True)
            if grounding and not has_grounding(data_dir):
                print(f"adding grounding questions to {data_dir}", flush=True)
                add_grounding(data_dir)
            return stats
        differ = [f"{k} {have[k]} -> {want[k]}" for k in want if have[k] != want[k]]
        if not set(splits) <= set(have_splits):
            differ.append(f"splits {','.join(have_splits)} -> {','.join(s for s in SPLITS if s in splits)}")
        if stats.get("generator_version") != GENERATOR_VERSION:
            differ.append(f"generator version {stats.get('generator_version')} -> {GENERATOR_VERSION}")
        print(f"regenerating the synthetic rooms in {data_dir} ({', '.join(differ)})", flush=True)
    return generate(data_dir, scenes=scenes, views=views, image_size=image_size, seed=seed, progress=progress,
                    train_questions_per_scene=train_questions_per_scene, render_scale=render_scale,
                    train_describe=train_describe, splits=splits, grounding=grounding)


SYNTH_RECORD_PREFIXES = ("roomplan_", "grounding_")
"""The prefixes of a synthetic set's record files other than the questions' (``train.jsonl``): the layouts
(Stage 2) and the grounding expressions."""


def synth_records_of(cfg) -> str:
    """The prefix of the synthetic record files ``cfg`` trains on, read from its first training file's name:
    ``"roomplan_"`` for a Stage 2 config, ``"grounding_"`` for a grounding one, else ``""`` (the questions)."""
    name = Path(cfg.data.train[0].path).name if cfg.data.train else ""
    return next((p for p in SYNTH_RECORD_PREFIXES if name.startswith(p)), "")


def use_synthetic_data(cfg, data_dir: str | os.PathLike, *, tokenizer: bool = True, records: str | None = None) -> None:
    """Point ``cfg`` (in place) at the synthetic set in ``data_dir``: its train and val records
    (``records``: the files' prefix, ``""`` for the questions, ``"roomplan_"`` for the layouts,
    ``"grounding_"`` for the grounding questions; None: the kind the config trains on,
    :func:`synth_records_of`) and, for a model built from its config (the demo-size LLM), the set's own
    tokenizer.

    ``tokenizer=True`` always uses ``DIR/tokenizer`` as the LLM's tokenizer folder (the demo configs name
    it there); with ``tokenizer=False`` it is used only when the config's tokenizer does not exist here.
    The feature cache setting is cleared: a cache belongs to other records.
    """
    from vqkit.config.schema import SourceConfig

    root = Path(data_dir)
    records = synth_records_of(cfg) if records is None else records
    train, val = root / f"{records}train.jsonl", root / f"{records}val.jsonl"
    if not train.is_file():
        raise ConfigError(f"{root}: no {train.name} (expected the layout of `vqkit synth`)")
    cfg.data.train = [SourceConfig(path=str(train))]
    cfg.data.val = [SourceConfig(path=str(val))] if val.is_file() else []
    cfg.data.feature_cache = None
    llm = cfg.model.llm
    if tokenizer:
        llm.name_or_path = str(root / "tokenizer")
        return
    tok_path = llm.tokenizer or llm.name_or_path
    if llm.from_config and not Path(tok_path).exists() and (root / "tokenizer").is_dir():
        llm.tokenizer = str(root / "tokenizer")
        # name_or_path is only a tokenizer folder when the architecture comes from the overrides; a hub
        # id without model_type there names the architecture to build (random weights), so it stays.
        if llm.architecture_from_overrides and not Path(llm.name_or_path).exists():
            llm.name_or_path = str(root / "tokenizer")
