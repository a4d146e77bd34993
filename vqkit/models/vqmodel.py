"""VQModel, the vision-question model: frozen VGGT aggregator -> projector (Perceiver resampler or
patch merger) -> [geometry tokens] -> Qwen3 (+ LoRA). The name is the kit's: a Vision-Question model
(``vqkit`` = its kit).

The model is assembled by one builder from the typed config (torchtune ``DeepFusionModel`` /
open_flamingo ``factory`` style): :func:`vqkit.models.builder.build_model` constructs the parts,
:class:`VQModel` receives them and fuses them. Vision tokens replace the ``<|image_pad|>`` placeholders in the LLM's
``inputs_embeds``; for each sample they are ``[projector tokens..., one geometry token per valid
view (records with geometry)...]``, exactly ``vqkit.tokenizer.vision_token_count`` of them (the
projector tokens: the Perceiver's latents, or the patch merger's cells of each real view in order).

The freeze is explicit: everything is frozen, then the projector, the geometry encoder and the LoRA
adapters (or the whole LLM with ``lora.full_finetune``) are unfrozen, and :meth:`VQModel.assert_frozen`
checks the result. The aggregator never trains.

A saved model folder (:meth:`VQModel.save_pretrained`) holds ``trainable.safetensors`` (only the
trained weights), ``config.yaml`` (the resolved config) and ``tokenizer/``;
:func:`vqkit.models.builder.load_model` rebuilds the frozen parts from the config (encoder weights
file or seed, LLM hub id/folder or config + seed) and loads the trained weights strictly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqkit.config.io import save_config
from vqkit.config.schema import Config
from vqkit.data.packing import count_per_sample
from vqkit.errors import CheckpointError, ConfigError, DataError
from vqkit.models.answer_loss import answer_loss
from vqkit.models.geometry_tokens import GeometryEncoder
from vqkit.models.llm import is_lora_param
from vqkit.models.llm_attention import llm_attention_inputs
from vqkit.models.patch_merger import PatchMerger
from vqkit.models.patch_points import batch_patch_points
from vqkit.models.projector import PerceiverResampler
from vqkit.models.stopping import RepeatedLineStop
from vqkit.roomplan.text import trim_repeated_lines
from vqkit.tokenizer import IM_END, vision_token_count, vision_token_ids
from vqkit.utils.distributed import zero3_partitioned
from vqkit.utils.files import write_safetensors
from vqkit.version import __version__
from vqkit.vggt.aggregator import feature_shape
from vqkit.vggt.predictor import cached_layer_outputs

TRAINABLE_FILE = "trainable.safetensors"
CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm weights, embeddings of views/latents: 1-D or explicitly excluded from decay."""
    return param.ndim < 2 or name.endswith(".bias") or "norm" in name.lower() or name.endswith("latents")


class VQModel(nn.Module):
    """The fused model. Build it with :func:`build_model` (or :func:`load_model`).

    Args:
        encoder: the VGGT ``Aggregator`` (frozen; run under no_grad in eval mode).
        projector: :class:`PerceiverResampler`, [B, S, P, C_in] -> [B, num_latents, D_llm], or
            :class:`~vqkit.models.patch_merger.PatchMerger` (``per_view_tokens``), -> [B, S, T, D_llm].
        geometry: :class:`GeometryEncoder` or None (``model.geometry.enabled: false``).
        llm: a transformers causal LM, possibly wrapped by peft.
        tokenizer: the tokenizer from ``vqkit.tokenizer.load_tokenizer`` (None on the meta device).
        config: the whole :class:`vqkit.config.Config` (saved with the model).
        geometry_predictor: VGGT's camera and depth heads (frozen; ``model.geometry.source`` heads / auto):
            samples marked ``predict_geometry`` get the geometry they predict from this batch's aggregator pass.
    """

    def __init__(self, encoder: nn.Module, projector: PerceiverResampler | PatchMerger,
                 geometry: GeometryEncoder | None,
                 llm: nn.Module, tokenizer, config: Config, geometry_predictor: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.geometry = geometry
        self.geometry_predictor = geometry_predictor
        self.llm = llm
        self.tokenizer = tokenizer
        self.config = config
        self.image_pad_id: int | None = None
        self.stop_token_ids: list[int] = []
        if tokenizer is not None:
            self.image_pad_id = vision_token_ids(tokenizer).pad_id
            stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
            self.stop_token_ids = sorted({int(t) for t in stops
                                          if t is not None and t != tokenizer.unk_token_id})
        self.freeze()

    # ------------------------------------------------------------------ freeze / parameters

    def _llm_trains(self, name: str) -> bool:
        lora = self.config.model.lora
        return lora.full_finetune or (lora.enabled and is_lora_param(name))

    def freeze(self) -> None:
        """Freeze everything, then unfreeze projector, geometry encoder and LoRA (or the whole LLM)."""
        for p in self.parameters():
            p.requires_grad_(False)
        for module in (self.projector, self.geometry):
            if module is not None:
                for p in module.parameters():
                    p.requires_grad_(True)
        for name, p in self.llm.named_parameters():
            if self._llm_trains(name):
                p.requires_grad_(True)
        self.assert_frozen()

    def assert_frozen(self) -> None:
        """Check that exactly the intended parameters train: encoder never; projector and geometry
        always; in the LLM the LoRA adapters, everything (full_finetune), or nothing."""
        wrong = []
        for prefix, module in (("encoder", self.encoder), ("projector", self.projector),
                               ("geometry", self.geometry), ("llm", self.llm),
                               ("geometry_predictor", self.geometry_predictor)):
            if module is None:
                continue
            for name, p in module.named_parameters():
                if prefix in ("encoder", "geometry_predictor"):
                    want = False
                elif prefix == "llm":
                    want = self._llm_trains(name)
                else:
                    want = True
                if p.requires_grad != want:
                    wrong.append(f"{prefix}.{name} ({'trains' if p.requires_grad else 'frozen'})")
        if wrong:
            raise AssertionError(f"unexpected freeze state of {len(wrong)} parameters: "
                                 f"{', '.join(wrong[:10])}{' ...' if len(wrong) > 10 else ''}")
        lora = self.config.model.lora
        if lora.enabled and not any(is_lora_param(n) for n, _ in self.llm.named_parameters()):
            raise AssertionError("model.lora.enabled but the LLM has no LoRA parameters")

    def parameter_counts(self) -> dict[str, tuple[int, int]]:
        """{component: (total, trainable)} for encoder, projector, geometry, llm base, lora.
        Full sizes also under DeepSpeed ZeRO-3, where a rank holds only a partition (``ds_numel``)."""
        def count(params):
            sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in params]
            return sum(n for n, _ in sizes), sum(n for n, trains in sizes if trains)

        llm = list(self.llm.named_parameters())
        heads = self.geometry_predictor  # VGGT's camera and depth heads (model.geometry.source heads / auto)
        return {
            "encoder": count(self.encoder.parameters()),
            "projector": count(self.projector.parameters()),
            "geometry": count(self.geometry.parameters()) if self.geometry is not None else (0, 0),
            "llm base": count(p for n, p in llm if not is_lora_param(n)),
            "lora": count(p for n, p in llm if is_lora_param(n)),
            **({"vggt heads": count(heads.parameters())} if heads is not None else {}),
        }

    def parameter_table(self) -> str:
        """A printable table of parameters per component, total and trainable."""
        counts = self.parameter_counts()
        rows = [(k, *v) for k, v in counts.items()]
        rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows)))
        lines = [f"{'component':<10} {'total':>15} {'trainable':>15}"]
        for i, (name, total, trainable) in enumerate(rows):
            if i == len(rows) - 1:
                lines.append("-" * 42)
            lines.append(f"{name:<10} {total:>15,} {trainable:>15,}")
        return "\n".join(lines)

    def param_groups(self, train_cfg) -> list[dict]:
        """AdamW parameter groups: LLM trainables at ``train.lr``, projector + geometry at
        ``train.proj_lr``. Biases, norms and latent/view tables get no weight decay, so with
        ``weight_decay > 0`` each group is split in two (``name`` says which); empty groups are
        dropped (e.g. a frozen LLM)."""
        llm = [(f"llm.{n}", p) for n, p in self.llm.named_parameters() if p.requires_grad]
        proj = [(f"{prefix}.{n}", p) for prefix, m in (("projector", self.projector), ("geometry", self.geometry))
                if m is not None for n, p in m.named_parameters() if p.requires_grad]
        groups = []
        for name, params, lr in (("llm", llm, train_cfg.lr), ("projector", proj, train_cfg.proj_lr)):
            if train_cfg.weight_decay > 0:
                decay = [p for n, p in params if not _no_decay(n, p)]
                no_decay = [p for n, p in params if _no_decay(n, p)]
                parts = [(name, decay, train_cfg.weight_decay), (f"{name}_no_decay", no_decay, 0.0)]
            else:
                parts = [(name, [p for _, p in params], 0.0)]
            groups += [{"name": n, "params": ps, "lr": lr, "weight_decay": wd} for n, ps, wd in parts if ps]
        return groups

    def train(self, mode: bool = True) -> VQModel:
        """Train mode everywhere except the frozen aggregator, which stays in eval mode."""
        super().train(mode)
        self.encoder.eval()  # (the geometry predictor's own train() keeps it in eval mode too)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    # ------------------------------------------------------------------ vision tokens

    @torch.no_grad()
    def encode_views(self, images: torch.Tensor, view_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen aggregator features: ``Aggregator.encode`` of the config's layers.

        images [B, S, 3, H, W] in [0, 1], view_mask bool [B, S] -> [B, S, P, C_in] with
        P = 1 camera + registers + patch tokens per view (the camera token summarises the view's
        pose, which is what VGGT's camera head reads) and C_in = 2 * embed_dim * len(layers); zeros
        for padding views. The aggregator masks padding views out of its global attention, so each
        sample's features are those of its real views encoded alone. This is exactly what the
        feature cache must store for ``batch["features"]``.

        The whole batch goes through the encoder in one call, whatever its mix of view counts: under
        DeepSpeed ZeRO-3 every module call gathers the module's parameters collectively, so the
        number of calls must not depend on the data a rank happens to hold.
        """
        return self._aggregate(images, view_mask)[0]

    @torch.no_grad()
    def _aggregate(self, images: torch.Tensor, view_mask: torch.Tensor | None = None,
                   extra_layers: Sequence[int] = ()) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """:meth:`encode_views`' features, and the aggregator's per-layer outputs of the same pass
        (the config's layers and ``extra_layers``, e.g. the geometry heads'; None for the others)."""
        self.encoder.eval()
        b, s = images.shape[:2]
        if view_mask is None:
            view_mask = torch.ones(b, s, dtype=torch.bool, device=images.device)
        view_mask = view_mask.to(torch.bool)
        if not bool(view_mask.any()):
            raise DataError("encode_views: every sample has zero views (view_mask is all False)")
        layers = list(self.config.model.encoder.layers)
        # The frozen encoder runs in bf16 on a GPU whatever the trainable part uses (it needs no grads),
        # its matmul weights stored in bf16 there (build_encoder); on the CPU in fp32, unless its weights
        # were stored in bf16 for a GPU. Inference mode: no autograd bookkeeping at all; the masked copy
        # below is made outside it, so the projector's backward may save it. Not under ZeRO-3: there
        # parameters are gathered on use, and the gathers it prefetches during this pass for the next
        # modules (the trainable projector) would be inference tensors, which backward cannot save.
        low = images.is_cuda or self.encoder.matmul_dtype == torch.bfloat16
        frozen = torch.no_grad() if zero3_partitioned(self.encoder) else torch.inference_mode()
        with frozen, torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=low):
            outputs, _ = self.encoder(images, layers=layers + list(extra_layers), view_mask=view_mask)
            feats = torch.cat([outputs[layer % self.encoder.depth] for layer in layers], dim=-1)  # [B, S, P, C_in]
        return feats.masked_fill(~view_mask[:, :, None, None], 0.0), (outputs if extra_layers else [])

    @staticmethod
    def image_hw(batch: dict) -> tuple[int, int]:
        """The batch's (padded) image size: of its images, or recorded beside cached features."""
        if batch.get("images") is not None:
            h, w = batch["images"].shape[-2:]
        else:
            h, w = batch["geometry"]["image_hw"]
        return int(h), int(w)

    def patch_grid(self, batch: dict) -> tuple[int, int]:
        """(rows, cols) of the aggregator's patch grid for this batch's (padded) image size."""
        return feature_shape(self.config.model.encoder, *self.image_hw(batch)).grid

    def vision_tokens(self, batch: dict, samples: list[int]) -> list[torch.Tensor]:
        """Vision tokens [N_i, D_llm] of the given samples: the projector's tokens (Perceiver latents,
        or the patch merger's tokens of each real view), then one geometry token per valid view when
        the record has geometry (and geometry is enabled)."""
        view_mask = batch["view_mask"][samples].to(torch.bool)
        predict = batch.get("predict_geometry")
        predicting = predict is not None and self.geometry is not None and bool(predict[samples].any())
        if predicting and self.geometry_predictor is None:
            raise ConfigError("the batch asks for predicted geometry (model.geometry.source heads / auto) but the "
                              "model has no VGGT heads: load it with load_model(..., geometry_source=...)")
        outputs: list[torch.Tensor | None] = []
        if batch.get("features") is not None:
            feats = batch["features"][samples]
            if predicting:
                outputs = cached_layer_outputs(feats, self.config.model.encoder.layers, self.encoder.depth,
                                               self.geometry_predictor.layers)
        else:
            extra = self.geometry_predictor.layers if predicting else ()
            feats, outputs = self._aggregate(batch["images"][samples], view_mask, extra)
        proj_dtype = next(self.projector.parameters()).dtype
        # Perceiver: [b, L, D]; patch merger: [b, S, T, D], every view slot (padding ones dropped below)
        extra = ()
        if getattr(self.projector, "point_mlp", None) is not None:  # the merger's 3D points of its cells
            extra = (batch_patch_points(batch, samples, self.patch_grid(batch), self.encoder.patch_size,
                                        self.config.data.box_frame),)
        projected = self.projector(feats.to(dtype=proj_dtype), view_mask, self.patch_grid(batch), *extra)
        geo_tokens = None
        geom_mask = batch.get("geom_mask")
        # The geometry encoder runs whenever it exists, even if no sample of this batch has geometry:
        # under DDP / ZeRO-3 every rank must run the same modules (a rank skipping it would leave
        # DDP with unused parameters and ZeRO-3's parameter gathers out of step).
        use_geo = self.geometry is not None and geom_mask is not None and batch.get("geometry") is not None
        if use_geo:
            geometry = {k: (v[samples] if torch.is_tensor(v) else v) for k, v in batch["geometry"].items()}
            if predicting:
                geometry = self.geometry_predictor.fill_batch(geometry, batch, samples, outputs,
                                                              self.encoder.patch_start_idx, self.image_hw(batch),
                                                              self.config.model.geometry)
            geo_tokens = self.geometry(geometry, view_mask)  # [b, S, D]
            if not bool(geom_mask[samples].any()):
                projected = projected + 0.0 * geo_tokens.sum()  # in the graph, without changing any value
        tokens = []
        per_view = self.projector.per_view_tokens
        for j, i in enumerate(samples):
            parts = [projected[j][view_mask[j]].flatten(0, 1) if per_view else projected[j]]
            if use_geo and bool(geom_mask[i]):
                parts.append(geo_tokens[j][view_mask[j]])
            tokens.append(torch.cat(parts, dim=0))
        return tokens

    def encode(self, batch: dict) -> list[torch.Tensor | None]:
        """Per sample, its vision tokens [N_i, D_llm], or None for a blind sample (no placeholders).
        The encoder runs only for the samples that see (never for a fully blind batch)."""
        batch = self._to_device(batch)
        counts = count_per_sample(batch, batch["input_ids"] == self.image_pad_id)
        seeing = [i for i, n in enumerate(counts) if n]
        tokens = self.vision_tokens(batch, seeing) if seeing else []
        out: list[torch.Tensor | None] = [None] * len(counts)
        for i, t in zip(seeing, tokens, strict=True):
            out[i] = t
        return out

    def embed_inputs(self, batch: dict) -> torch.Tensor:
        """``inputs_embeds`` [B, L, D_llm]: the token embeddings with vision tokens written at the
        ``<|image_pad|>`` positions. Blind samples (no placeholders) get none; a fully blind batch
        never runs the encoder."""
        if self.image_pad_id is None:
            raise ConfigError("this VQModel has no tokenizer (built on the meta device?)")
        input_ids = batch["input_ids"]
        embed = self.llm.get_input_embeddings()
        inputs_embeds = embed(input_ids)
        is_pad = input_ids == self.image_pad_id
        n_placeholders = count_per_sample(batch, is_pad)
        samples = [i for i, n in enumerate(n_placeholders) if n > 0]
        if not samples:
            return inputs_embeds
        meta = batch.get("meta") or [{}] * len(n_placeholders)
        view_mask = batch["view_mask"].to(torch.bool)
        geom_mask = batch.get("geom_mask")
        image_hw = self.image_hw(batch)
        for i in samples:
            views = int(view_mask[i].sum())
            has_geo = bool(geom_mask[i]) if geom_mask is not None else False
            expected = vision_token_count(self.config.model, views, has_geo, image_hw)
            if views == 0 or expected != n_placeholders[i]:
                sid = meta[i].get("id", i) if isinstance(meta[i], dict) else i
                geo = views if (has_geo and self.config.model.geometry.enabled) else 0
                raise DataError(
                    f"sample {sid}: the prompt has {n_placeholders[i]} <|image_pad|> placeholders but the "
                    f"model writes {expected} vision tokens ({expected - geo} from the "
                    f"{self.config.model.projector.type} + {geo} geometry tokens for {views} views of "
                    f"{image_hw[0]}x{image_hw[1]} px); build the Collator from the same model config")
        tokens = self.vision_tokens(batch, samples)
        flat = torch.cat(tokens, dim=0).to(inputs_embeds.dtype)
        # masked_scatter fills the placeholder positions in row-major order: sample by sample (a packed
        # row holds them in sample order too), in prompt order, which is the order of `tokens`. Out of
        # place, so autograd reaches `flat`.
        return inputs_embeds.masked_scatter(is_pad.unsqueeze(-1), flat)

    def _to_device(self, batch: dict) -> dict:
        device = self.device
        out = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                out[key] = value.to(device, non_blocking=True)
            elif key == "geometry" and isinstance(value, dict):
                out[key] = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in value.items()}
            else:
                out[key] = value
        return out

    # ------------------------------------------------------------------ forward / generate

    def forward(self, batch: dict):
        """batch (see vqkit.data.collate.Collator) -> transformers ``CausalLMOutputWithPast``.

        With ``labels``: ``loss`` is the mean cross-entropy over this batch's label tokens (a per-batch
        mean, what evaluation reads; a training step weighs it per token across its micro-batches and
        ranks, :mod:`vqkit.train.step`), and ``logits`` [B, K, V]
        covers only the K positions whose next token is labelled in some sample (the LM head over
        every vision and prompt position would cost more than the rest of a small model's step;
        :func:`vqkit.models.answer_loss.answer_loss`). With ``liger_kernels`` the loss is fused and
        ``logits`` is None.
        Without labels: ``logits`` [B, L, V] for every position. A packed batch (``data.packing``) is one row
        whose samples attend only to themselves (:mod:`vqkit.models.llm_attention`): the same loss.
        """
        batch = self._to_device(batch)
        inputs_embeds = self.embed_inputs(batch)
        labels = batch.get("labels")
        mask, llm_kwargs = llm_attention_inputs(self.llm, batch, inputs_embeds.dtype)
        if labels is None:
            return self.llm(inputs_embeds=inputs_embeds, attention_mask=mask, use_cache=False, **llm_kwargs)
        return answer_loss(self.llm, inputs_embeds, mask, labels, fused=self.config.model.llm.liger_kernels,
                           **llm_kwargs)

    @torch.no_grad()
    def generate(self, batch: dict, max_new_tokens: int = 16, *, stop_on_repeated_line: bool | None = None,
                 **generate_kwargs: Any) -> list[str]:
        """Answers for a generate-mode batch (left-padded prompts, no labels): only the new tokens,
        decoded without special tokens and stripped. Stops on eos / ``<|im_end|>`` or after
        ``max_new_tokens``. Greedy unless generation kwargs (do_sample, temperature, top_p,
        num_beams, ...) say otherwise.

        ``stop_on_repeated_line`` (default: when the batch holds Stage 2 records, ``task: roomplan``):
        a sequence also stops once it completes a line that repeats an earlier element line
        (:class:`RepeatedLineStop`), and that repeat is trimmed from its text, so a layout that
        starts to loop costs one line, not the rest of the token budget.
        """
        batch = self._to_device(batch)
        input_ids = batch["input_ids"]
        if input_ids.shape[0] > 1 and bool((batch["attention_mask"][:, -1] == 0).any()):
            raise DataError("generate needs left-padded prompts (build the Collator in generate mode)")
        if stop_on_repeated_line is None:
            stop_on_repeated_line = any(isinstance(m, dict) and m.get("task") == "roomplan"
                                        for m in batch.get("meta") or [])
        if stop_on_repeated_line:
            from transformers import StoppingCriteriaList

            criteria = StoppingCriteriaList(generate_kwargs.pop("stopping_criteria", None) or [])
            criteria.append(RepeatedLineStop(self.tokenizer, input_ids.shape[1]))
            generate_kwargs["stopping_criteria"] = criteria
        was_training = self.training
        self.eval()
        try:
            inputs_embeds = self.embed_inputs(batch)
            generate_kwargs.setdefault("do_sample", False)
            generate_kwargs.setdefault("eos_token_id", self.stop_token_ids)
            generate_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
            out = self.llm.generate(input_ids=input_ids, inputs_embeds=inputs_embeds,
                                    attention_mask=batch["attention_mask"], max_new_tokens=max_new_tokens,
                                    **generate_kwargs)
        finally:
            self.train(was_training)
        # With input_ids given, transformers returns prompt + new tokens; keep the new ones.
        new = out[:, input_ids.shape[1]:] if out.shape[1] > input_ids.shape[1] else out[:, :0]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        if stop_on_repeated_line:
            texts = [trim_repeated_lines(t) for t in texts]
        return [t.strip() for t in texts]

    # ------------------------------------------------------------------ saving

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the parameters that train (projector, geometry, LoRA or the full LLM), on CPU."""
        return {n: p.detach().to("cpu").contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def save_pretrained(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write ``trainable.safetensors``, ``config.yaml`` and ``tokenizer/`` into ``folder``.

        ``state_dict``: the trainable weights when they were gathered elsewhere (DeepSpeed ZeRO-3
        partitions parameters, so the trainer gathers them first); default
        :meth:`trainable_state_dict`.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.trainable_state_dict() if state_dict is None else {
            k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        write_safetensors(folder / TRAINABLE_FILE, state, metadata={"format": "pt", "vqkit_version": __version__})
        save_config(self.config, folder / CONFIG_FILE)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
        return folder

    def load_trainable(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Copy trained weights in strictly: the keys must be exactly the trainable parameters."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))

        def shape(p):  # ZeRO-3 partitions parameters and keeps the full shape in ds_shape
            return tuple(getattr(p, "ds_shape", p.shape))

        bad_shape = sorted(n for n in set(params) & set(state) if shape(params[n]) != tuple(state[n].shape))
        if missing or unexpected or bad_shape:
            def show(names):
                return ", ".join(names[:8]) + (f" ... ({len(names)} in all)" if len(names) > 8 else "")

            problems = [f"{label}: {show(names)}" for label, names in
                        (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", bad_shape))
                        if names]
            raise CheckpointError(f"{source} does not match the model: {'; '.join(problems)}")
        with torch.no_grad():
            for name, p in params.items():
                if hasattr(p, "ds_id"):  # a ZeRO-3 partition: gather, let rank 0 write, re-partition
                    import deepspeed

                    with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
                        p.copy_(state[name].to(device=p.device, dtype=p.dtype))
                else:
                    p.copy_(state[name].to(device=p.device, dtype=p.dtype))

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """:meth:`load_trainable` under the name the trainer's checkpoint code calls."""
        self.load_trainable(state, source="checkpoint trainable.safetensors")


__all__ = ["VQModel", "RepeatedLineStop"]
