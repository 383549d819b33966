"""Train a CRNN-style recognizer of 3-digit strips (digits images side by side) and export it to ONNX.

Conv + BatchNorm + HardSwish features, the height averaged away, a bidirectional LSTM over the 24
columns, a GRU, then one Linear per column averaged over each digit's 8 columns: logits [N, 3, 10].
The same blocks as exported OCR recognizers (HardSwish, LSTM, GRU, per-column heads). Writes, next
to this file: ``digits_strip.onnx`` (TorchScript exporter, opset 17), ``digits_strip.json`` (held-out
string accuracy), ``digits_strip_calib.npz`` (256 training strips, key ``input``) and
``digits_strip_test.npz`` (500 held-out strips ``input``, digits ``label`` [N, 3]). Seeded.
Run: ``python sample_models/digits_strip.py [--epochs N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_resnet import HERE, SEED, export, load_digits_split, run_epochs  # noqa: E402  (run from here or sys.path)

DIGITS = 3


def strips(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` strips of DIGITS random images of (x, y) side by side: [count, 1, 8, 8*DIGITS], labels
    [count, DIGITS]."""
    pick = np.random.default_rng(seed).integers(0, len(x), size=(count, DIGITS))
    images = np.concatenate([x[pick[:, k]] for k in range(DIGITS)], axis=3)
    return images.astype(np.float32), y[pick].astype(np.int64)


def build_model():
    """The strip recognizer (imports torch)."""
    from torch import nn

    class StripRecognizer(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
                                          nn.Conv2d(16, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24), nn.Hardswish())
            self.lstm = nn.LSTM(24, 16, bidirectional=True, batch_first=True)
            self.gru = nn.GRU(32, 24, batch_first=True)
            self.head = nn.Linear(24, 10)

        def forward(self, x):
            f = self.features(x).mean(dim=2).transpose(1, 2)  # [N, W, C]
            f, _ = self.lstm(f)
            f, _ = self.gru(f)
            logits = self.head(f)  # [N, W, 10]
            n, w, c = logits.shape
            return logits.reshape(n, DIGITS, w // DIGITS, c).mean(dim=2)

    return StripRecognizer()


def train(epochs: int, seed: int = SEED):
    """Train on 4,000 strips of training digits; return (model, held-out string accuracy)."""
    import torch

    torch.manual_seed(seed)
    train_x, train_y, test_x, test_y = load_digits_split(seed)
    xs, ys = (torch.from_numpy(a) for a in strips(train_x, train_y, 4000, seed))
    model = build_model()
    run_epochs(model, torch.optim.Adam(model.parameters(), lr=3e-3), xs, ys, slot_loss, epochs, seed)
    tx, ty = strips(test_x, test_y, 500, seed + 1)
    with torch.no_grad():
        pred = model(torch.from_numpy(tx)).argmax(2).numpy()
    return model, float((pred == ty).all(axis=1).mean())


def slot_loss(logits, labels):
    """Cross-entropy over every digit slot: logits [N, DIGITS, 10], labels [N, DIGITS]."""
    import torch

    return torch.nn.functional.cross_entropy(logits.reshape(-1, 10), labels.reshape(-1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model, acc = train(args.epochs)
    export(model, args.out / "digits_strip.onnx", (1, 1, 8, 8 * DIGITS))
    (args.out / "digits_strip.json").write_text(json.dumps({"fp32_test_string_accuracy": acc}, indent=2))
    train_x, train_y, test_x, test_y = load_digits_split()
    np.savez_compressed(args.out / "digits_strip_calib.npz", input=strips(train_x, train_y, 256, SEED + 2)[0])
    tx, ty = strips(test_x, test_y, 500, SEED + 1)
    np.savez_compressed(args.out / "digits_strip_test.npz", input=tx, label=ty)
    print(f"fp32 held-out string accuracy: {acc:.4f} (500 strips of {DIGITS} digits)")


if __name__ == "__main__":
    main()
