#!/usr/bin/env python3
"""A small trainer on synthetic data: fits y = 3x - 2 + noise with SGD and reports the loss.

Stands in for a real training binary in the quickstart: it reads its hyperparameters from
flags, as launch scripts pass them, and exits non-zero when training diverges.
"""

import argparse
import json
import math
import os
import random
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning_rate", type=float, default=0.01)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    flags = parser.parse_args()

    rng = random.Random(flags.seed)
    data = [(x, 3 * x - 2 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(1024))]
    weight, bias = 0.0, 0.0
    loss = float("inf")
    for step in range(1, flags.steps + 1):
        batch = rng.sample(data, flags.batch_size)
        grad_w = sum(2 * (weight * x + bias - y) * x for x, y in batch) / len(batch)
        grad_b = sum(2 * (weight * x + bias - y) for x, y in batch) / len(batch)
        weight -= flags.learning_rate * grad_w
        bias -= flags.learning_rate * grad_b
        loss = sum((weight * x + bias - y) ** 2 for x, y in batch) / len(batch)
        if math.isnan(loss) or loss > 1e6:
            print(f"step {step}: diverged (loss {loss})", file=sys.stderr)
            return 1
        if step % 50 == 0:
            print(f"step {step}: loss {loss:.4f}", flush=True)
    result = {
        "work_unit": os.environ.get("XM_WORK_UNIT_ID"),
        "learning_rate": flags.learning_rate,
        "loss": round(loss, 6),
        "weight": round(weight, 4),
        "bias": round(bias, 4),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
