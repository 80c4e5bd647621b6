#!/usr/bin/env python3
"""A small trainer on synthetic data: fits a linear model with minibatch SGD in numpy.

Stands in for a real training binary in the quickstart: it reads its hyperparameters from
flags, as launch scripts pass them, prints its progress and a final JSON result line, and exits
non-zero when training diverges.

It runs three ways: as the py_binary //examples/quickstart:train (numpy from Bazel's pip
repository) and inside the image //examples/quickstart:train_image, which the quickstart's launch
script packages, and as a plain script (e.g. an `xm.Binary`). A plain script starts under
whatever `python3` is on PATH; when that one lacks numpy, the script re-executes itself with the
project's virtual environment (.venv).
"""

import argparse
import json
import os
import sys
from pathlib import Path

try:
    import numpy as np
except ModuleNotFoundError:
    _VENV = Path(__file__).resolve().parents[2] / ".venv"
    _VENV_PYTHON = _VENV / "bin" / "python"
    if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != _VENV.resolve():
        os.execv(_VENV_PYTHON, [str(_VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
    raise SystemExit("train.py needs numpy: run ./setup.sh setup (it creates .venv)") from None

FEATURES = 4
EXAMPLES = 1024
TRUE_WEIGHTS = np.array([3.0, -1.5, 0.5, 2.0])
TRUE_BIAS = -2.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning_rate", type=float, default=0.01)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    flags = parser.parse_args()

    rng = np.random.default_rng(flags.seed)
    x = rng.uniform(-1.0, 1.0, size=(EXAMPLES, FEATURES))
    y = x @ TRUE_WEIGHTS + TRUE_BIAS + rng.normal(0.0, 0.1, size=EXAMPLES)
    weights = np.zeros(FEATURES)
    bias = 0.0
    loss = float("inf")
    for step in range(1, flags.steps + 1):
        batch = rng.choice(EXAMPLES, size=flags.batch_size, replace=False)
        error = x[batch] @ weights + bias - y[batch]
        weights -= flags.learning_rate * 2.0 * (x[batch].T @ error) / flags.batch_size
        bias -= flags.learning_rate * 2.0 * float(error.mean())
        loss = float(np.mean((x[batch] @ weights + bias - y[batch]) ** 2))
        if not np.isfinite(loss) or loss > 1e6:
            print(f"step {step}: diverged (loss {loss})", file=sys.stderr)
            return 1
        if step % 50 == 0:
            print(f"step {step}: loss {loss:.4f}", flush=True)
    result = {
        "work_unit": os.environ.get("XM_WORK_UNIT_ID"),
        "learning_rate": flags.learning_rate,
        "loss": round(loss, 6),
        "weights": [round(float(w), 4) for w in weights],
        "bias": round(bias, 4),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
