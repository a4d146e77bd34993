"""Official VGGT checkpoints: finding the file (a path, a folder or a hub id), reading the aggregator's
tensors from it without unpickling (``torch.load(weights_only=True)`` or safetensors), loading them
strictly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
import torch
from torch import Tensor, nn

from vqkit.errors import CheckpointError

_PREFIX = "aggregator."
# Official checkpoint files, in the order a folder or hub repo is searched.
WEIGHT_FILES = ("model.safetensors", "model.pt")



def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A checkpoint file from a file path, a folder (model.safetensors, then model.pt) or a hub id."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no {' or '.join(WEIGHT_FILES)} in this folder")
    text = str(source)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~")) and path.suffix == ""
    if not looks_like_hub_id:
        raise CheckpointError(f"{source}: checkpoint file not found")
    return _download(text)


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
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                keys = list(f.keys())
                keep = [k for k in keys if k.startswith(_PREFIX)] or keys
                return _strip({k: f.get_tensor(k) for k in keep}, path)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
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
    return _strip(dict(state), path)


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
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_key_list([_PREFIX + k for k in missing])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_key_list([_PREFIX + k for k in unexpected])}")
        raise CheckpointError(f"{where}: aggregator weights do not match the model ({'; '.join(parts)}); "
                              f"check model.encoder (embed_dim, depth, patch_embed, ...)")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{where}: {_PREFIX}{key} has shape {tuple(state[key].shape)} in the "
                                  f"checkpoint but {tuple(tensor.shape)} in the model; check model.encoder")
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    on_meta = any(t.is_meta for t in expected.values())
    aggregator.load_state_dict(state, strict=True, assign=on_meta)
    if on_meta:
        aggregator._init_buffers(device=aggregator.camera_token.device)
    return aggregator
