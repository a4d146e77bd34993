"""Liger's kernels on vs off on this GPU (``model.llm.liger_kernels``), before a benchmark relies on them.

    python scripts/gpu_liger_check.py [--json]

Two copies of a small Qwen3 (Qwen3-4B's head width, vocabulary and RoPE; 4 layers 1024 wide) with the same
random weights and LoRA adapters: the first as vqkit runs it without Liger (transformers' RMSNorm, SwiGLU and
RoPE, the LM head and cross-entropy at the answer positions), the second with Liger's kernels swapped in and
its fused linear cross-entropy (:func:`vqkit.models.answer_loss.answer_loss`). The same bf16 batch goes through both;
the losses and the LoRA gradients must agree to bf16 rounding. The plain copy runs first: Liger's RoPE
replacement is module-wide. Prints one JSON object with ``ok``; scripts/gpu_real_size.sh turns Liger on for
its benchmark only when ``ok`` is true.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from vqkit.config.schema import LLMConfig, LoRAConfig
from vqkit.models.answer_loss import answer_loss
from vqkit.models.llm import KNOWN_LLM_CONFIGS, apply_lora, build_llm

LOSS_RTOL = 2e-2  # bf16 matmuls and a different reduction order
GRAD_COSINE = 0.99


def small_qwen3(liger: bool, device: torch.device) -> torch.nn.Module:
    real = KNOWN_LLM_CONFIGS["Qwen/Qwen3-4B-Instruct-2507"]
    overrides = dict(real, hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                     intermediate_size=3072)
    llm_cfg = LLMConfig(name_or_path="qwen3-small", from_config=True, config_overrides=overrides, liger_kernels=liger)
    torch.manual_seed(0)
    model = build_llm(llm_cfg, None, device)
    torch.manual_seed(1)
    return apply_lora(model, LoRAConfig(dropout=0.0)).train()


def run(model, embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, fused: bool) -> dict:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = answer_loss(model, embeds, mask, labels, fused=fused)
    out.loss.backward()
    torch.cuda.synchronize()
    grads = {n: p.grad.float().flatten() for n, p in model.named_parameters() if p.grad is not None}
    return {"loss": out.loss.item(), "grads": grads}


def liger_forwards(model: torch.nn.Module) -> dict[str, int]:
    """Liger's forwards in the model (Liger rebinds ``forward`` on the instances: the classes keep their
    names) and its RoPE, by name -> count."""
    from transformers.models.qwen3 import modeling_qwen3

    found: dict[str, int] = {}
    for module in model.modules():
        name = getattr(getattr(module, "forward", None), "__qualname__", "")
        if name.startswith("Liger"):
            found[name] = found.get(name, 0) + 1
    if modeling_qwen3.apply_rotary_pos_emb.__module__.startswith("liger_kernel"):
        found["rope: " + modeling_qwen3.apply_rotary_pos_emb.__name__] = 1
    return found


def check() -> dict:
    """Long because it is one check read top to bottom: inputs, both runs, the comparison."""
    device = torch.device("cuda")
    batch, length, answer = 4, 256, 16
    gen = torch.Generator(device="cpu").manual_seed(2)
    embeds = (0.02 * torch.randn(batch, length, 1024, generator=gen)).to(device, torch.bfloat16)
    mask = torch.ones(batch, length, dtype=torch.long, device=device)
    mask[1, :32] = 0  # a left-padded sample
    labels = torch.full((batch, length), -100, dtype=torch.long)
    labels[:, -answer:] = torch.randint(0, 151936, (batch, answer), generator=gen)
    labels = labels.to(device)

    t0 = time.perf_counter()
    plain = run(small_qwen3(False, device), embeds, mask, labels, fused=False)
    liger_model = small_qwen3(True, device)
    kernels = liger_forwards(liger_model)
    liger = run(liger_model, embeds, mask, labels, fused=True)
    cosines = {n: float(torch.nn.functional.cosine_similarity(g, liger["grads"][n], dim=0))
               for n, g in plain["grads"].items() if n in liger["grads"]}
    worst = min(cosines, key=cosines.get) if cosines else None
    rel = abs(liger["loss"] - plain["loss"]) / abs(plain["loss"])
    ok = (rel <= LOSS_RTOL and bool(kernels) and cosines.keys() == plain["grads"].keys() == liger["grads"].keys()
          and any("lora_" in n for n in cosines) and min(cosines.values()) >= GRAD_COSINE)
    return {"ok": ok, "loss_plain": plain["loss"], "loss_liger": liger["loss"], "loss_rel_diff": rel,
            "loss_rtol": LOSS_RTOL, "grads_compared": len(cosines), "min_grad_cosine": cosines.get(worst),
            "worst_grad": worst, "grad_cosine_min_required": GRAD_COSINE, "liger_modules": kernels,
            "seconds": time.perf_counter() - t0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line (default: the same, indented)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"ok": False, "error": "no CUDA device"}))
        return 1
    try:
        result = check()
    except Exception as e:  # noqa: BLE001 - the benchmark needs the reason in one line, whatever it is
        result = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    print(json.dumps(result, indent=None if args.json else 1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
