"""Videos as views: a video file's frames are named ``clip.mp4#frame=12`` (a *frame reference*) wherever a
record lists images, and decoded with PyAV when a sample needs them.

Why PyAV: its wheels bundle FFmpeg and do not depend on torch, so ``pip install av`` works beside any
torch build, CPU or CUDA (torchcodec needs the FFmpeg shared libraries of the system and a release
matched to the installed torch; decord has had no release since 2022). PyAV is an optional
dependency (``pip install 'vqkit[video]'``); without it a video is a one-line error naming the file.

A record built from a video (``vqkit.data.conversations``) lists at most ``data.video_frames`` frames,
spread evenly over the whole video (every frame when it has fewer); the dataset then chooses
``data.num_views`` of those as it chooses among any record's images (evenly in evaluation, a seeded
random spread in training). Frames are counted from the container's packets (no decoding) when the
record is read, and decoded in one pass from the start when the sample is loaded, up to the last frame
it needs.

An animated image (a GIF of several frames, or an animated WebP / PNG) is a short video too: its frames
are ``anim.gif#frame=2`` and PIL decodes them (``ImageSequence``; no PyAV needed). ``vqkit ask --images``
reads such a file as its frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from vqkit.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Image files that may hold several frames (PIL's ``n_frames``); ``#frame=N`` refers to one of them.
ANIMATED_SUFFIXES = (".gif", ".webp", ".png", ".apng", ".tif", ".tiff")
_REF = re.compile(r"^(?P<path>.+)#frame=(?P<index>\d+)$")


def is_video_file(path: str) -> bool:
    """Whether ``path`` names a video file by its suffix."""
    return path.lower().endswith(VIDEO_SUFFIXES)


def frame_ref(path: str, index: int) -> str:
    """The reference of frame ``index`` (0-based, in decoding order) of the video at ``path``."""
    return f"{path}#frame={int(index)}"


def parse_frame_ref(ref: str) -> tuple[str, int] | None:
    """(video or animated image path, frame index) of a frame reference, or None for a plain image path."""
    match = _REF.match(ref)
    if match is None or not match["path"].lower().endswith(VIDEO_SUFFIXES + ANIMATED_SUFFIXES):
        return None
    return match["path"], int(match["index"])


def image_frame_count(path: str) -> int:
    """How many frames the image file at ``path`` holds (1 for a still image; a GIF's or an animated
    WebP / PNG's frames); a file PIL cannot read is a DataError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(getattr(img, "n_frames", 1))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read the image ({e})") from None


def animated_frame_refs(path: str) -> list[str]:
    """Every frame of an animated image as frame references; ``[path]`` itself for a still image."""
    if not path.lower().endswith(ANIMATED_SUFFIXES):
        return [path]
    count = image_frame_count(path)
    return [frame_ref(path, i) for i in range(count)] if count > 1 else [path]


def _decode_image_frames(path: str, indices: Sequence[int]):
    """PIL images (RGB) of the frames ``indices`` of an animated image (PIL's ImageSequence)."""
    from PIL import Image, ImageSequence

    wanted = {int(i) for i in indices}
    found = {}
    try:
        with Image.open(path) as img:
            for k, frame in enumerate(ImageSequence.Iterator(img)):
                if k in wanted:
                    found[k] = frame.convert("RGB")
                    if len(found) == len(wanted):
                        break
            total = int(getattr(img, "n_frames", 1))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (OSError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read the image's frames ({e})") from None
    missing = sorted(i for i in wanted if i not in found)
    if missing:
        raise DataError(f"{path}: frame {missing[0]} asked for; the image holds {total} frame(s)")
    return [found[int(i)] for i in indices]


def media_file(path: str) -> str:
    """The file behind an image path or a frame reference (what exists on disk)."""
    parsed = parse_frame_ref(path)
    return parsed[0] if parsed else path


def _av():
    try:
        import av
    except ImportError:
        raise DataError("reading videos needs PyAV: pip install 'vqkit[video]' (or pip install av)") from None
    return av


def _open(path: str):
    av = _av()
    try:
        container = av.open(path)
    except FileNotFoundError:
        raise DataError(f"{path}: video not found") from None
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the video ({e})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: cannot decode the video (it has no video stream)")
    return container


@lru_cache(maxsize=4096)
def _count(path: str, size: int, mtime_ns: int) -> int:
    av = _av()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        # The container's packets, not its header's nb_frames (absent or wrong in some files).
        count = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the video ({e})") from None
    finally:
        container.close()
    if count == 0:
        raise DataError(f"{path}: cannot decode the video (it holds no frames)")
    return count


def count_frames(path: str) -> int:
    """The number of frames of the video at ``path`` (remembered per file version)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: video not found") from None
    return _count(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def spread_indices(available: int, wanted: int) -> list[int]:
    """``wanted`` indices of ``available`` spread evenly, first and last included (all when fewer)."""
    if available <= wanted:
        return list(range(available))
    return np.round(np.linspace(0, available - 1, wanted)).astype(int).tolist()


def video_frame_refs(path: str, resolved: str, max_frames: int) -> list[str]:
    """The frame references a record lists for the video ``path`` (as written in the data; ``resolved``
    is where it is on disk): at most ``max_frames``, spread evenly over the video."""
    return [frame_ref(path, i) for i in spread_indices(count_frames(resolved), max_frames)]


def folder_frames(folder: str, suffixes: tuple[str, ...] = FRAME_SUFFIXES) -> list[str]:
    """The frame files (names ending in ``suffixes``) of a folder of frames, in name order (numbers
    compared as numbers). A ``.png`` whose stem also has a ``.jpg`` is that frame's depth map (ScanNet's
    posed_images), not a frame."""
    try:
        names = [n for n in os.listdir(folder) if n.lower().endswith(suffixes)
                 and os.path.isfile(os.path.join(folder, n))]
    except OSError as e:
        raise DataError(f"{folder}: cannot list the frames ({e.strerror})") from None
    jpeg_stems = {os.path.splitext(n)[0] for n in names if n.lower().endswith((".jpg", ".jpeg"))}
    names = [n for n in names if not (n.lower().endswith(".png") and os.path.splitext(n)[0] in jpeg_stems)]
    return sorted(names, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)])


def decode_frames(path: str, indices: Sequence[int]):
    """PIL images (RGB) of the frames ``indices`` of the video (or animated image) at ``path``, in the
    order asked.

    One pass from the start, stopping after the last frame needed. A video that cannot be decoded, or
    has fewer frames than an index, is a DataError naming the file."""
    if not is_video_file(path):
        return _decode_image_frames(path, indices)
    av = _av()
    wanted = {int(i) for i in indices}
    found = {}
    decoded = 0
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for k, frame in enumerate(container.decode(stream)):
            decoded = k + 1
            if k in wanted:
                found[k] = frame.to_image()
                if len(found) == len(wanted):
                    break
    except (av.FFmpegError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the video ({e})") from None
    finally:
        container.close()
    missing = sorted(i for i in wanted if i not in found)
    if missing:
        raise DataError(f"{path}: cannot decode the video (frame {missing[0]} asked for; it decodes to "
                        f"{decoded} frames)")
    return [found[int(i)] for i in indices]


def write_video(path: str, frames: Sequence[np.ndarray], fps: int = 4, codec: str = "libx264") -> str:
    """Write RGB frames (``[H, W, 3]`` uint8, even sizes for H.264) as a video file; for tests, demos
    and fixtures. Returns ``path``."""
    av = _av()
    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise DataError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
