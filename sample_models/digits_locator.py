"""Train an FPN-style digit locator (a tiny text detector) and export it to ONNX.

One digits image is placed at a random column of a 16×32 canvas; the model predicts a per-pixel
probability map of the digit's box. A strided SiLU backbone, a top-down path with nearest and
bilinear Resize, a ConvTranspose upsampling head and a Sigmoid: the blocks of exported
DB/EAST-style detectors. Writes, next to this file: ``digits_locator.onnx`` (TorchScript exporter,
opset 17), ``digits_locator.json`` (held-out mean IoU of the thresholded map vs the true box),
``digits_locator_calib.npz`` (256 training canvases, key ``input``) and ``digits_locator_test.npz``
(300 held-out canvases ``input``, box columns ``label`` [N, 2] = first and last+1). Seeded.
Run: ``python sample_models/digits_locator.py [--epochs N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_resnet import HERE, SEED, export, load_digits_split, run_epochs  # noqa: E402  (run from here or sys.path)

H, W = 16, 32


def canvases(x: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images [count, 1, H, W], box masks [count, 1, H, W], box columns [count, 2]) with one digit each."""
    rng = np.random.default_rng(seed)
    pick, cols = rng.integers(0, len(x), count), rng.integers(0, W - 8 + 1, count)
    rows = rng.integers(0, H - 8 + 1, count)
    images = (rng.random((count, 1, H, W), dtype=np.float32) * 0.1).astype(np.float32)
    masks = np.zeros_like(images)
    for i, (p, c, r) in enumerate(zip(pick, cols, rows)):
        images[i, 0, r:r + 8, c:c + 8] = np.maximum(images[i, 0, r:r + 8, c:c + 8], x[p, 0])
        masks[i, 0, r:r + 8, c:c + 8] = 1.0
    return images, masks, np.stack([cols, cols + 8], axis=1).astype(np.int64)


def build_model():
    """The locator (imports torch)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

    class Locator(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = block(1, 16, 1), block(16, 24, 2), block(24, 32, 2)
            self.lat2, self.lat3 = nn.Conv2d(24, 16, 1), nn.Conv2d(32, 16, 1)
            self.fuse = block(32, 16, 1)
            self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
            self.out = nn.Conv2d(8, 1, 3, 1, 1)

        def forward(self, x):
            f1 = self.c1(x)
            f2 = self.c2(f1)
            f3 = self.c3(f2)
            p2 = self.lat2(f2) + F.interpolate(self.lat3(f3), scale_factor=2.0, mode="nearest")
            p3 = F.interpolate(self.lat3(f3), scale_factor=2.0, mode="bilinear", align_corners=False)
            p = self.fuse(torch.cat((p2, p3), dim=1))
            return self.out(F.relu(self.up(p))).sigmoid()

    return Locator()


def box_iou(prob: np.ndarray, cols: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per sample: IoU of the columns whose max probability exceeds `threshold` with the true columns."""
    hit = prob.max(axis=1) > threshold  # [N, H, W] -> columns [N, W]
    truth = np.zeros_like(hit)
    for i, (a, b) in enumerate(cols):
        truth[i, a:b] = True
    union = (hit | truth).sum(1)
    return np.where(union > 0, (hit & truth).sum(1) / np.maximum(union, 1), 1.0)


def train(epochs: int, seed: int = SEED):
    """Train on 3,000 canvases of training digits (BCE); return (model, held-out mean IoU)."""
    import torch

    torch.manual_seed(seed)
    train_x, _, test_x, _ = load_digits_split(seed)
    xs, ms, _ = canvases(train_x, 3000, seed)
    xs, ms = torch.from_numpy(xs), torch.from_numpy(ms)
    model = build_model()
    run_epochs(model, torch.optim.Adam(model.parameters(), lr=3e-3), xs, ms, torch.nn.functional.binary_cross_entropy,
               epochs, seed)
    tx, _, tc = canvases(test_x, 300, seed + 1)
    with torch.no_grad():
        prob = model(torch.from_numpy(tx)).numpy()[:, 0]
    return model, float(box_iou(prob, tc).mean())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model, iou = train(args.epochs)
    export(model, args.out / "digits_locator.onnx", (1, 1, H, W), "prob")
    (args.out / "digits_locator.json").write_text(json.dumps({"fp32_test_mean_iou": iou}, indent=2))
    train_x, _, test_x, _ = load_digits_split()
    np.savez_compressed(args.out / "digits_locator_calib.npz", input=canvases(train_x, 256, SEED + 2)[0])
    tx, _, tc = canvases(test_x, 300, SEED + 1)
    np.savez_compressed(args.out / "digits_locator_test.npz", input=tx, label=tc)
    print(f"fp32 held-out mean IoU: {iou:.4f} (300 canvases)")


if __name__ == "__main__":
    main()
