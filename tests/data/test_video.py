"""Videos as views: frame references, counting and decoding with PyAV, folders of frames, and the
errors of a video that cannot be decoded."""

from __future__ import annotations

import numpy as np
import pytest
from conversation_fixtures import video_frames, write_video_file

from vqkit.data.images import load_views
from vqkit.data.video import (
    count_frames,
    decode_frames,
    folder_frames,
    frame_ref,
    media_file,
    parse_frame_ref,
    spread_indices,
)
from vqkit.errors import DataError


def test_frame_references():
    assert parse_frame_ref(frame_ref("a/clip.mp4", 12)) == ("a/clip.mp4", 12)
    assert parse_frame_ref("a/photo#frame=3.jpg") is None and parse_frame_ref("notes.txt#frame=1") is None
    assert media_file("v/clip.MOV#frame=7") == "v/clip.MOV" and media_file("a.jpg") == "a.jpg"


def test_spread_indices_cover_first_to_last():
    assert spread_indices(100, 4) == [0, 33, 66, 99] and spread_indices(3, 8) == [0, 1, 2]


def test_decoded_frames_are_the_written_ones_in_the_order_asked(tmp_path):
    path = write_video_file(tmp_path / "clip.mp4", n=12)
    assert count_frames(str(path)) == 12
    written = video_frames(12)
    got = decode_frames(str(path), [9, 0, 4])
    for image, k in zip(got, [9, 0, 4], strict=True):
        err = np.abs(np.asarray(image, dtype=float) - written[k]).mean()
        assert image.size == (64, 48) and err < 12  # H.264 is lossy; other frames differ by far more
    with pytest.raises(DataError, match=r"clip.mp4: cannot decode the video \(frame 20 asked for; it decodes to 12"):
        decode_frames(str(path), [20])


def test_views_of_one_video_decode_together(tmp_path):
    path = write_video_file(tmp_path / "clip.mp4", n=8)
    images, plans, _ = load_views([frame_ref(str(path), i) for i in (1, 6)], 28, "crop")
    assert [tuple(im.shape) for im in images] == [(3, 28, 28)] * 2 and plans[0].src == (64, 48)
    assert not np.allclose(images[0].numpy(), images[1].numpy())


def test_broken_or_missing_videos_are_one_line_errors(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 20)
    broken, missing = (tmp_path / "broken.mp4", "cannot decode the video"), (tmp_path / "none.mp4", "video not found")
    for path, what in (broken, missing):
        with pytest.raises(DataError, match=what) as info:
            count_frames(str(path))
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=r"field 'images\[0\]': .*broken.mp4: cannot decode the video"):
        load_views([frame_ref(str(tmp_path / "broken.mp4"), 0)], 28, fields=["images[0]"])


def test_folder_frames_leave_posed_images_depth_out(tmp_path):
    for name in ("00010.jpg", "00010.png", "00002.jpg", "00002.png", "00002.txt", "intrinsic.txt", "frame_b.png"):
        (tmp_path / name).write_bytes(b"x")
    assert folder_frames(str(tmp_path)) == ["00002.jpg", "00010.jpg", "frame_b.png"]


def test_feature_cache_keys_a_videos_frames_by_its_file(tmp_path):
    from vqkit.data.feature_cache import view_set_key

    path = write_video_file(tmp_path / "clip.mp4", n=4)
    key = view_set_key([frame_ref(str(path), 0), frame_ref(str(path), 3)])
    assert key != view_set_key([frame_ref(str(path), 0), frame_ref(str(path), 2)])
    write_video_file(path, n=5)
    assert key != view_set_key([frame_ref(str(path), 0), frame_ref(str(path), 3)])  # the file changed


def test_an_animated_image_is_a_short_video_decoded_by_pil(tmp_path):
    """A GIF's frames are frame references like a video's (no PyAV needed); a still image is itself."""
    from PIL import Image

    from vqkit.data.video import animated_frame_refs, image_frame_count

    frames = [Image.new("RGB", (32, 24), (40 * k, 200 - 40 * k, 90)) for k in range(5)]
    gif = str(tmp_path / "anim.gif")
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    assert image_frame_count(gif) == 5 and parse_frame_ref(f"{gif}#frame=4") == (gif, 4)
    assert animated_frame_refs(gif) == [frame_ref(gif, k) for k in range(5)]
    decoded = decode_frames(gif, [4, 1])
    assert [d.getpixel((3, 3)) for d in decoded] == [frames[4].getpixel((3, 3)), frames[1].getpixel((3, 3))]
    images, _, _ = load_views([frame_ref(gif, 2), frame_ref(gif, 0)], 28)
    assert not np.allclose(images[0].numpy(), images[1].numpy())
    still = str(tmp_path / "still.png")
    frames[0].save(still)
    assert animated_frame_refs(still) == [still] and image_frame_count(still) == 1
    with pytest.raises(DataError, match="anim.gif: frame 9 asked for; the image holds 5 frame"):
        decode_frames(gif, [9])
