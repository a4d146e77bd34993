"""vqkit.lmms.models: ``--model vqkit`` answers lmms-eval's requests as ``vqkit eval`` answers the same
records (its text, views and cameras), in batches; what it cannot take is a one-line error."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install 'vqkit[lmms]')")

from lmms_eval.api.instance import Instance  # noqa: E402

from vqkit.errors import ConfigError, DataError  # noqa: E402
from vqkit.eval.generate import evaluate  # noqa: E402
from vqkit.lmms import synth_docs as sd  # noqa: E402
from vqkit.lmms.models import AVAILABLE_MODELS  # noqa: E402
from vqkit.lmms.models.vqkit import VQKit  # noqa: E402

TASK = "vqkit_synth_val"


@pytest.fixture(scope="module")
def lm(synth_model_dir, synth_dir):
    model = VQKit(pretrained=str(synth_model_dir), device="cpu", batch_size="3")
    model.task_dict = {TASK: {"val": sd.synth_docs(synth_dir)}}
    return model


def _requests(docs, doc_to_visual=sd.doc_to_visual, gen_kwargs=None):
    return [Instance("generate_until", (sd.synth_doc_to_text(d, {"post_prompt": ""}), dict(gen_kwargs or {}),
                                        doc_to_visual, i, TASK, "val"), idx=0,
                     metadata={"task": TASK, "doc_id": i, "repeats": 1}) for i, d in enumerate(docs)]


def test_the_plugin_names_the_model():
    assert AVAILABLE_MODELS == {"vqkit": "VQKit"}


@pytest.mark.parametrize("batch_size", [1, 3])
def test_answers_are_vqkit_eval_s(lm, synth_model_dir, synth_dir, batch_size):
    rows, _ = evaluate(lm.model, data=str(synth_dir / "val.jsonl"), language=False, progress=False,
                       batch_size=batch_size)
    lm.batch_size = batch_size
    answers = lm.generate_until(_requests(lm.task_dict[TASK]["val"]))
    assert answers == [r["prediction"] for r in rows]


def test_without_cameras_the_answers_change(lm):
    docs = lm.task_dict[TASK]["val"]
    with_cameras = lm.generate_until(_requests(docs))
    lm.task_dict = {TASK: {"val": [{**d, "cameras": ""} for d in docs]}}
    try:
        without = lm.generate_until(_requests(lm.task_dict[TASK]["val"]))
    finally:
        lm.task_dict = {TASK: {"val": docs}}
    assert without != with_cameras  # the geometry tokens are read from the documents


def test_image_paths_and_stop_strings(lm):
    docs = lm.task_dict[TASK]["val"][:3]
    decoded = lm.generate_until(_requests(docs, gen_kwargs={"max_new_tokens": 5}))
    paths = lm.generate_until(_requests(docs, doc_to_visual=lambda d: d["images"], gen_kwargs={"max_new_tokens": 5}))
    assert paths == decoded
    stop = next(a[1] for a in decoded if len(a) > 1)
    cut = lm.generate_until(_requests(docs, gen_kwargs={"max_new_tokens": 5, "until": [stop]}))
    assert cut == [a.split(stop, 1)[0] for a in decoded]


def test_requests_it_cannot_answer_are_one_line_errors(lm, synth_model_dir):
    docs = lm.task_dict[TASK]["val"]
    with pytest.raises(DataError, match="clip.mp4: video not found"):
        lm.generate_until(_requests(docs[:1], doc_to_visual=lambda d: ["clip.mp4"]))
    with pytest.raises(DataError, match="document 0: no images or video frames"):
        lm.generate_until(_requests(docs[:1], doc_to_visual=lambda d: []))
    lm.task_dict = {TASK: {"val": [{**docs[0], "cameras": json.dumps(json.loads(docs[0]["cameras"])[:1])}]}}
    try:
        with pytest.raises(DataError, match="document 0: 1 cameras for 2 views"):
            lm.generate_until(_requests(lm.task_dict[TASK]["val"]))
    finally:
        lm.task_dict = {TASK: {"val": docs}}
    with pytest.raises(NotImplementedError, match="generate_until requests only"):
        lm.loglikelihood([])
    with pytest.raises(ConfigError, match="unknown argument.*temperature"):
        VQKit(pretrained=str(synth_model_dir), device="cpu", temperature="0.5")
    with pytest.raises(ConfigError, match="expected true or false"):
        VQKit(pretrained=str(synth_model_dir), device="cpu", blind="maybe")


def test_a_video_request_is_read_as_its_frames(lm, tmp_path):
    """A request whose visual is a video file: the model reads its frames as it reads the same frames
    handed over as images (``data.video_frames`` of them spread over the video, ``data.num_views`` read)."""
    pytest.importorskip("av", reason="PyAV is not installed (pip install 'vqkit[video]')")
    import numpy as np

    from vqkit.data.video import decode_frames, write_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    video = write_video(str(tmp_path / "clip.mp4"), frames)
    docs = lm.task_dict[TASK]["val"]
    lm.task_dict = {TASK: {"val": [{**d, "cameras": ""} for d in docs[:2]]}}  # a video has no cameras
    try:
        from_video = lm.generate_until(_requests(lm.task_dict[TASK]["val"], doc_to_visual=lambda d: [video]))
        decoded = decode_frames(video, range(6))
        from_images = lm.generate_until(_requests(lm.task_dict[TASK]["val"], doc_to_visual=lambda d: decoded))
    finally:
        lm.task_dict = {TASK: {"val": docs}}
    assert from_video == from_images
