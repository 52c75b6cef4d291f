"""`tinyseq export --checkpoint CKPT --onnx OUT.onnx`: a trained model as an ONNX file.

    tinyseq export --checkpoint runs/tag/best.npz --onnx tagger.onnx [--opset 18] [--softmax]

The graph's inputs follow the model (see :mod:`tinyseq.onnx.export`): a language model
takes ids (T, B) and its initial state h_0 (, c_0), so it can generate step by step; a
classifier or tagger takes ids (B, T) (or features (B, T, F)) and lengths (B,). Batch
and time are dynamic.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

__all__ = ["add_commands", "example_input"]


def add_commands(sub: Any) -> None:
    """Register ``tinyseq export`` on the parser's subparsers."""
    p = sub.add_parser(
        "export", help="write a checkpoint's model as an ONNX file (needs tinyseq[onnx])",
        description="Write a checkpoint's model as a standard ONNX file (RNN/GRU/LSTM ops).",
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `tinyseq train`")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 18 to 21 (default 18)")
    p.add_argument("--softmax", action="store_true",
                   help="also output the probabilities (softmax of the logits)")
    p.set_defaults(func=cmd_export)


def example_input(model: Any, batch: int = 2, steps: int = 3) -> Any:
    """A small dummy input for ``model``'s forward: ``batch`` sequences of ``steps`` steps."""
    from .models import LanguageModel

    if isinstance(model, LanguageModel):
        ids = np.ones((steps, batch), dtype=np.int64)
        return ids, model.rnn.layers.initial_state(batch)
    if model.inputs.embedding is not None:
        x: np.ndarray = np.ones((batch, steps), dtype=np.int64)
    else:
        dtype = next(iter(model.parameters())).dtype
        x = np.zeros((batch, steps, model.inputs.size), dtype=dtype)
    return x, np.full(batch, steps, dtype=np.int64)


def cmd_export(args: argparse.Namespace) -> int:
    """Rebuild the checkpoint's model and write it as ONNX; bad input is one error line."""
    from .checkpoint import CheckpointError
    from .trainer import load_model

    try:
        from .onnx import export

        model, _ = load_model(args.checkpoint)
        if not hasattr(model, "rnn"):
            raise ValueError(
                f"{args.checkpoint} holds a {model.kind} model; tinyseq export writes language "
                "models, classifiers, taggers and regressors"
            )
        proto = export(model, args.onnx, example_input(model), opset=args.opset, softmax=args.softmax)
    except (CheckpointError, FileNotFoundError, IsADirectoryError, PermissionError, ImportError,
            ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    inputs = ", ".join(i.name for i in proto.graph.input)
    outputs = ", ".join(o.name for o in proto.graph.output)
    print(f"wrote {args.onnx} (opset {args.opset}; inputs {inputs}; outputs {outputs})")
    return 0
