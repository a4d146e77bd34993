"""Official VGGT checkpoints: finding the file (a path, a folder or a hub id), reading its tensors
without unpickling (``torch.load(weights_only=True)`` or safetensors), loading them strictly: the
aggregator alone (:func:`load_aggregator_weights`, the encoder of the VQ model) or the whole model
with its camera, depth and point heads (:func:`load_vggt_weights`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from vqkit.errors import CheckpointError

_PREFIX = "aggregator."
# Official checkpoint files, in the order a folder or hub repo is searched.
WEIGHT_FILES = ("model.safetensors", "model.pt")



# File name endings that make a weights value a local path, never a hub id.
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def is_hub_id(source: str | os.PathLike) -> bool:
    """Whether a weights value reads as a hub id (``org/name``: one slash, not starting with ``/``, ``.``
    or ``~``, no weights-file ending) rather than a local path. A local path that does not exist is
    never taken for a hub id (a missing ``/ckpts/model.pt`` is an error, not a download)."""
    text = str(source)
    return (text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith("/")
            and "\\" not in text and not text.lower().endswith(WEIGHT_SUFFIXES))


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A checkpoint file from a file path, a folder (model.safetensors, then model.pt) or a hub id
    (:func:`is_hub_id`); a path that is not there is a CheckpointError naming it."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no {' or '.join(WEIGHT_FILES)} in this folder")
    if not is_hub_id(source):
        raise CheckpointError(f"{source}: checkpoint file not found (a local path; a hub id reads like "
                              f"facebook/VGGT-1B)")
    return _download(str(source))


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        raise CheckpointError(f"{repo_id}: huggingface_hub is needed to download hub ids") from exc
    hint = (f"download model.pt from https://huggingface.co/{repo_id} to ckpts/{repo_id.split('/')[-1]}/ "
            f"and set model.encoder.weights to that file")
    offline: Exception | None = None
    for name in WEIGHT_FILES:
        try:
            return Path(hf_hub_download(repo_id, name))
        except LocalEntryNotFoundError as exc:  # offline (or hub unreachable) and not in the cache
            offline = exc
        except EntryNotFoundError:  # this repo stores the other format
            continue
        except Exception as exc:  # gated, unknown repo, network errors
            raise CheckpointError(f"{repo_id}: cannot download the aggregator weights "
                                  f"({type(exc).__name__}); {hint}") from exc
    if offline is not None:
        raise CheckpointError(f"{repo_id}: not in the local cache and the hub cannot be reached "
                              f"(offline); {hint}") from offline
    raise CheckpointError(f"{repo_id}: no {' or '.join(WEIGHT_FILES)} in this hub repo; {hint}")


def read_aggregator_state_dict(source: str | os.PathLike) -> dict[str, Tensor]:
    """The aggregator's tensors from a checkpoint, keys without the ``aggregator.`` prefix.

    Accepts the official whole-model state dict (``aggregator.*`` kept, ``camera_head.*``,
    ``depth_head.*`` ... ignored), a bare aggregator state dict, or a training checkpoint holding one
    under ``"model"`` / ``"state_dict"``. ``.pt`` files load with ``weights_only=True`` and ``mmap``,
    safetensors lazily (only the aggregator's tensors are read).
    """
    path = resolve_checkpoint(source)
    if path.suffix == ".safetensors":
        return _strip(_read_safetensors(path, lambda keys: [k for k in keys if k.startswith(_PREFIX)] or keys), path)
    return _strip(_read_pt(path), path)


def _read_safetensors(path: Path, select) -> dict[str, Tensor]:
    """The tensors of a safetensors file whose keys ``select(all keys)`` returns (only those are read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in select(list(f.keys()))}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def _read_pt(path: Path) -> dict[str, Tensor]:
    """A .pt/.pth state dict (memory-mapped when possible), unwrapped from ``model`` / ``state_dict``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        try:  # legacy (non-zip) files cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True) ({exc})") from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True) ({exc})") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (VGGT model.pt)")
    return dict(state)


def _strip(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith(_PREFIX) for k in state):
        return {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}
    return state


def _key_list(keys: Sequence[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _check_state(where: str, what: str, state: Mapping[str, Tensor], expected: Mapping[str, Tensor],
                 unexpected: Sequence[str], *, hint: str, prefix: str = "") -> None:
    """One CheckpointError naming the missing and unexpected keys (``prefix`` + key, as the file spells
    them), else the first key whose shape differs; ``hint`` says which settings to check."""
    missing = [k for k in expected if k not in state]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_key_list([prefix + k for k in missing])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_key_list([prefix + k for k in unexpected])}")
        raise CheckpointError(f"{where}: {what} do not match the model ({'; '.join(parts)}); {hint}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{where}: {prefix}{key} has shape {tuple(state[key].shape)} in the checkpoint "
                                  f"but {tuple(tensor.shape)} in the model; {hint}")


def load_aggregator_weights(aggregator: nn.Module, source: str | os.PathLike | Mapping[str, Tensor],
                            dtype: torch.dtype | None = None) -> nn.Module:
    """Load official weights into ``aggregator`` strictly; returns it.

    ``source``: a ``.pt``/``.pth``/``.safetensors`` file, a folder holding ``model.safetensors`` or
    ``model.pt``, a hub id (needs network), or an in-memory state dict. Missing or unexpected keys,
    and shape mismatches, raise :class:`CheckpointError` naming them. An aggregator on the meta
    device receives the checkpoint's tensors by assignment (no second copy); its non-persistent
    buffers are then re-created on the weights' device.
    """
    where = "state dict" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        state = _strip(dict(source), Path(where))
    else:
        state = read_aggregator_state_dict(source)
    expected = aggregator.state_dict()
    _check_state(where, "aggregator weights", state, expected, [k for k in state if k not in expected],
                 hint="check model.encoder (embed_dim, depth, patch_embed, ...)", prefix=_PREFIX)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    on_meta = any(t.is_meta for t in expected.values())
    aggregator.load_state_dict(state, strict=True, assign=on_meta)
    if on_meta:
        aggregator._init_buffers(device=aggregator.camera_token.device)
    return aggregator


# --------------------------------------------------------------------------------------------
# The whole model: aggregator + camera / depth / point heads
# --------------------------------------------------------------------------------------------

VGGT_PARTS = ("aggregator", "camera_head", "point_head", "depth_head", "track_head")
"""Top-level parts of the official whole-model state dict, in its order."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsReport:
    """What :func:`load_vggt_weights` did: how many tensors it loaded, and which keys of the file it
    dropped because the model does not have their part (vqkit's VGGT has no track head, so the
    official file's 394 ``track_head.*`` keys; a disabled head's keys likewise)."""

    source: str
    loaded: int
    dropped: tuple[str, ...]

    def summary(self) -> str:
        """One line, e.g. ``model.pt: loaded 1403 tensors; dropped 394 track_head.* keys (no such head)``."""
        counts: dict[str, int] = {}
        for key in self.dropped:
            part = key.split(".", 1)[0]
            counts[part] = counts.get(part, 0) + 1
        text = f"{self.source}: loaded {self.loaded} tensors"
        if counts:
            text += "; dropped " + ", ".join(f"{n} {part}.* keys" for part, n in counts.items())
            text += " (the model has no such head)"
        return text


def read_vggt_state_dict(source: str | os.PathLike,
                         parts: Sequence[str] = VGGT_PARTS) -> tuple[dict[str, Tensor], list[str]]:
    """A whole-model checkpoint (the official ``model.pt`` / ``model.safetensors``, a folder or a hub
    id) -> (the tensors of ``parts``, every key the file holds), ``module.`` prefixes removed.

    Tensors of other parts are not read from safetensors files (and stay memory-mapped in .pt files).
    """
    path = resolve_checkpoint(source)
    wanted = set(parts)
    if path.suffix == ".safetensors":
        keys: list[str] = []

        def select(all_keys: list[str]) -> list[str]:
            keys.extend(all_keys)
            return [k for k in all_keys if _part(k) in wanted]

        state = _strip_module(_read_safetensors(path, select))
        keys = list(_strip_module(dict.fromkeys(keys)))
    else:
        state = _strip_module(_read_pt(path))
        keys = list(state)
    return {k: v for k, v in state.items() if _part(k) in wanted}, keys


def _part(key: str) -> str:
    """``camera_head.trunk.0...`` -> ``camera_head``; a key without the prefix of a known part -> ``key``."""
    head = key.split(".", 1)[0]
    return head if head in VGGT_PARTS else key


def _strip_module(state: dict) -> dict:
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP wrapper
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def load_vggt_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor],
                      dtype: torch.dtype | None = None) -> WeightsReport:
    """Load a whole-VGGT checkpoint into ``model`` (a :class:`vqkit.vggt.VGGT`) strictly.

    Every key of the parts the model has must be in the file with the model's shape, and the file
    may hold no other key of those parts: otherwise :class:`CheckpointError` names the missing,
    unexpected or mis-shaped keys. Keys of parts the model does not have (the track head, a
    disabled head) are dropped and listed in the returned :class:`WeightsReport`, which is also
    logged. ``dtype`` casts the aggregator's floating weights; the heads are always float32 (they
    run in float32, as upstream). A model on the meta device receives the tensors by assignment.
    """
    where = "state dict" if isinstance(source, Mapping) else str(source)
    present = [name for name in VGGT_PARTS if getattr(model, name, None) is not None]
    if isinstance(source, Mapping):
        everything = _strip_module(dict(source))
        file_keys = list(everything)
        state = {k: v for k, v in everything.items() if _part(k) in present}
    else:
        state, file_keys = read_vggt_state_dict(source, present)
    if not any(k.startswith(_PREFIX) for k in file_keys):
        raise CheckpointError(f"{where}: not a whole-VGGT state dict (no aggregator.* keys); a bare aggregator "
                              f"file loads with Aggregator.from_pretrained")
    expected = model.state_dict()
    dropped = tuple(k for k in file_keys if _part(k) in VGGT_PARTS and _part(k) not in present)
    # a key of no known part, or a key of a part the model has that the model does not hold
    unexpected = [k for k in file_keys if _part(k) not in VGGT_PARTS or (_part(k) in present and k not in expected)]
    _check_state(where, "VGGT weights", state, expected, unexpected,
                 hint="check the VGGT arguments (embed_dim, enable_point / enable_depth / enable_camera, head sizes)")
    state = {k: _cast(v, dtype if k.startswith(_PREFIX) else torch.float32) for k, v in state.items()}
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(state, strict=True, assign=on_meta)
    if on_meta:
        model.aggregator._init_buffers(device=model.aggregator.camera_token.device)
    report = WeightsReport(where, len(state), dropped)
    if dropped:
        logger.info(report.summary())
    return report


def _cast(tensor: Tensor, dtype: torch.dtype | None) -> Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
