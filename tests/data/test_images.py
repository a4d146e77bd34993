import numpy as np
import pytest
import torch
from PIL import Image

from vqkit.cameras import intrinsics, metres_to_depth_png, project
from vqkit.data.images import load_depth, load_image, load_semantics, load_views, plan_resize
from vqkit.errors import DataError


@pytest.mark.parametrize("wh, mode, size, resized, out, offset", [
    ((640, 480), "crop", 518, (518, 392), (518, 392), (0, 0)),      # VGGT: 480 * 518/640 = 388.5 -> 392
    ((480, 640), "crop", 518, (518, 686), (518, 518), (0, 84)),     # portrait: centre crop of the height
    ((1296, 968), "crop", 448, (448, 336), (448, 336), (0, 0)),     # ScanNet colour frames
    ((640, 480), "pad", 518, (518, 392), (518, 518), (0, -63)),     # pad: long side 518, white bands
    ((480, 640), "pad", 518, (392, 518), (518, 518), (-63, 0)),
])
def test_plan_matches_vggt_preprocessing(wh, mode, size, resized, out, offset):
    plan = plan_resize(*wh, size, mode)
    assert plan.resized == resized and plan.out == out and plan.offset == offset
    assert out[0] % 14 == 0 and out[1] % 14 == 0


def _marker_image(path, w, h, K, points, mode="RGB"):
    """Black image with a 3x3 white marker at the projection of each world point (identity pose)."""
    arr = np.zeros((h, w, 3), np.uint8)
    pix, _ = project(points, np.eye(3), np.zeros(3), K)
    for u, v in pix:
        j, i = int(u), int(v)  # pixel whose centre is (j + 0.5, i + 0.5)
        arr[i - 1:i + 2, j - 1:j + 2] = 255
    Image.fromarray(arr).convert(mode).save(path)
    return pix


@pytest.mark.parametrize("mode, wh", [("crop", (140, 100)), ("crop", (100, 160)), ("pad", (140, 100)),
                                      ("pad", (90, 150))])
def test_intrinsics_follow_resize_crop_and_pad(tmp_path, mode, wh):
    w, h = wh
    K = intrinsics(80.0, 80.0, w / 2, h / 2)
    points = np.array([[-0.3, -0.2, 1.0], [0.25, 0.15, 1.0], [0.0, 0.0, 2.0]])
    path = tmp_path / "m.png"
    _marker_image(path, w, h, K, points)
    img, plan = load_image(str(path), 56, mode)
    K_new = plan.intrinsics(K)
    assert img.shape == (3, plan.out[1], plan.out[0]) and img.dtype == torch.float32
    expected, _ = project(points, np.eye(3), np.zeros(3), K_new)
    gray = img.mean(0).numpy()
    for u, v in expected:
        # The brightest pixel near the predicted location: within a pixel of it.
        i, j = int(v), int(u)
        window = gray[max(i - 3, 0):i + 4, max(j - 3, 0):j + 4]
        di, dj = np.unravel_index(np.argmax(window), window.shape)
        assert window.max() > 0.3
        assert abs(max(i - 3, 0) + di + 0.5 - v) <= 1.5 and abs(max(j - 3, 0) + dj + 0.5 - u) <= 1.5


def test_pad_mode_pads_with_white_and_crop_mode_has_no_border(tmp_path):
    path = tmp_path / "black.png"
    Image.new("RGB", (140, 70), (0, 0, 0)).save(path)
    img, plan = load_image(str(path), 56, "pad")
    assert img.shape == (3, 56, 56) and plan.resized == (56, 28)
    assert torch.all(img[:, :14] == 1.0) and torch.all(img[:, -14:] == 1.0) and torch.all(img[:, 14:42] == 0.0)
    img, _ = load_image(str(path), 56, "crop")
    assert img.shape == (3, 28, 56) and torch.all(img == 0.0)


def test_rgba_is_composited_on_white_and_grayscale_becomes_rgb(tmp_path):
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[:, :14] = [255, 0, 0, 255]  # opaque red left half, transparent right half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img, _ = load_image(str(tmp_path / "a.png"), 28)
    assert torch.allclose(img[:, :, :10].mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(img[:, :, 18:].mean((1, 2)), torch.ones(3))
    Image.new("L", (28, 28), 128).save(tmp_path / "g.png")
    img, _ = load_image(str(tmp_path / "g.png"), 28)
    assert img.shape == (3, 28, 28) and torch.allclose(img, torch.full_like(img, 128 / 255))


def test_jpeg_draft_decoding_keeps_size_and_content(tmp_path):
    y, x = np.mgrid[0:480, 0:640]
    arr = np.stack([x * 255 // 640, y * 255 // 480, np.full_like(x, 90)], -1).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(arr).save(tmp_path / "a.png")
    jpg, plan_j = load_image(str(tmp_path / "a.jpg"), 112)
    png, plan_p = load_image(str(tmp_path / "a.png"), 112)
    assert jpg.shape == png.shape == (3, 84, 112) and plan_j == plan_p
    assert (jpg - png).abs().mean() < 0.02


def test_a_decoded_image_is_loaded_as_its_file(tmp_path):
    """Evaluation harnesses hand over PIL images: the same tensor and plan as the file they came from,
    also for a JPEG opened lazily (decoded at reduced scale as from the file) and an RGBA image."""
    y, x = np.mgrid[0:120, 0:160]
    arr = np.stack([x * 255 // 160, y * 255 // 120, np.full_like(x, 90)], -1).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=90)
    rgba = np.concatenate([arr, np.full_like(arr[..., :1], 128)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    for name in ("a.jpg", "b.png"):
        path = str(tmp_path / name)
        want, plan = load_image(path, 56)
        got, got_plan = load_image(Image.open(path), 56)
        assert got.equal(want) and got_plan == plan, name


def test_undecodable_files_raise_data_error_naming_them(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated.png"):
        load_image(str(truncated), 28)
    # a record's view names its field: the third image of the record
    with pytest.raises(DataError, match=r"^field 'images\[2\]': .*truncated.png: cannot decode the image"):
        load_views([str(good), str(truncated)], 28, fields=["images[0]", "images[2]"])
    text = tmp_path / "text.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match="text.png"):
        load_image(str(text), 28)
    with pytest.raises(DataError, match="missing.png"):
        load_image(str(tmp_path / "missing.png"), 28)


def test_depth_follows_the_image_geometry(tmp_path):
    # A 60x40 depth map (other resolution than the 120x80 image) with a step at the middle column.
    depth = np.full((40, 60), 2.0)
    depth[:, 30:] = 4.0
    depth[0, 0] = 0.0
    Image.fromarray(metres_to_depth_png(depth)).save(tmp_path / "d.png")
    Image.new("RGB", (120, 80)).save(tmp_path / "i.png")
    _, plan = load_image(str(tmp_path / "i.png"), 56, "pad")
    d = load_depth(str(tmp_path / "d.png"), plan)
    assert d.shape == (56, 56) and d.dtype == torch.float32
    # pad mode: 56 x 42 (rounded from 37.3) inside a 56 x 56 square: bands of zeros (invalid).
    assert plan.resized == (56, 42)
    assert torch.all(d[:7] == 0) and torch.all(d[-7:] == 0)
    assert set(torch.unique(d[7:49]).tolist()) <= {0.0, 2.0, 4.0}  # nearest: no blended depths
    assert torch.all(d[20, 5:27] == 2.0) and torch.all(d[20, 29:] == 4.0)
    Image.new("RGB", (10, 10)).save(tmp_path / "rgb_depth.png")
    with pytest.raises(DataError, match="16-bit"):
        load_depth(str(tmp_path / "rgb_depth.png"), plan)


def test_semantic_maps_follow_the_image_geometry_and_pad_unlabelled(tmp_path):
    classes = np.zeros((40, 60), np.uint8)
    classes[:, 30:] = 7
    Image.fromarray(classes).save(tmp_path / "s.png")
    Image.new("RGB", (120, 80)).save(tmp_path / "i.png")
    _, plan = load_image(str(tmp_path / "i.png"), 56, "pad")
    s = load_semantics(str(tmp_path / "s.png"), plan)
    assert s.shape == (56, 56) and s.dtype == torch.int64
    assert torch.all(s[:7] == 255) and torch.all(s[-7:] == 255)  # the padding is unlabelled
    assert set(torch.unique(s[7:49]).tolist()) == {0, 7}  # nearest: never a blend of two classes
    Image.new("RGB", (10, 10)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"semantics\[1\].*rgb.png: a semantic map must be an 8-bit"):
        load_semantics(str(tmp_path / "rgb.png"), plan, field="semantics[1]")


def test_view_file_size_from_an_image_header_and_a_video_frame(tmp_path):
    """What a packed batch's token count sizes a patch merger's vision block from, before any image loads."""
    from vqkit.data.images import image_file_size
    from vqkit.data.video import frame_ref, write_video

    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(tmp_path / "a.png")
    assert image_file_size(str(tmp_path / "a.png")) == (50, 30)
    clip = write_video(str(tmp_path / "clip.mp4"), [np.full((24, 40, 3), 40 * i, np.uint8) for i in range(4)])
    assert image_file_size(frame_ref(clip, 2)) == (40, 24)
    with pytest.raises(DataError, match="not found"):
        image_file_size(str(tmp_path / "missing.png"))
