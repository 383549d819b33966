"""Train a small ResNet-style CNN on scikit-learn's bundled digits and export it to ONNX.

Writes, next to this file: ``digits_resnet.onnx`` (TorchScript exporter, opset 17),
``digits_calib.npz`` (256 training images, key ``input``) and ``digits_test.npz``
(held-out images ``input`` and labels ``label``). Seeded: the same torch build gives the same files.
Run: ``python sample_models/digits_resnet.py [--epochs N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

SEED = 0
HERE = Path(__file__).resolve().parent


def load_digits_split(seed: int = SEED):
    """Return (train_x, train_y, test_x, test_y) as float32 NCHW in [0, 1] / int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = 497
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


@functools.cache
def block_class():
    """The residual basic block: conv-BN-ReLU, conv-BN, plus identity or a strided 1x1 downsample."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    return Block


def build_model():
    """The digits ResNet: stem conv, an identity block, a strided block with 1x1 downsample."""
    import torch
    from torch import nn

    Block = block_class()

    class DigitsResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu = nn.ReLU()
            self.layer1 = nn.Sequential(Block(16, 16, 1))
            self.layer2 = nn.Sequential(Block(16, 32, 2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer2(self.layer1(x))
            return self.fc(torch.flatten(self.pool(x), 1))

    return DigitsResNet()


def train(epochs: int, seed: int = SEED):
    """Train the model with Adam and return (model, test accuracy)."""
    import torch

    torch.manual_seed(seed)
    return fit(build_model(), epochs, seed)


def fit(model, epochs: int, seed: int = SEED, optimizer=None):
    """Train `model` on the digits split (batches of 64, cosine schedule, Adam unless `optimizer`
    is given) and return (model, held-out accuracy)."""
    import torch

    train_x, train_y, test_x, test_y = load_digits_split(seed)
    opt = (optimizer or torch.optim.Adam)(model.parameters(), lr=3e-3, weight_decay=1e-4)
    run_epochs(model, opt, torch.from_numpy(train_x), torch.from_numpy(train_y), torch.nn.functional.cross_entropy,
               epochs, seed)
    with torch.no_grad():
        pred = model(torch.from_numpy(test_x)).argmax(1).numpy()
    return model, float((pred == test_y).mean())


def run_epochs(model, opt, x, target, loss_fn, epochs: int, seed: int = SEED) -> None:
    """The samples' training loop: `epochs` seeded shuffles of (x, target) in batches of 64 with
    opt and a cosine schedule, minimising loss_fn(model(x), target); leaves the model in eval mode."""
    import torch

    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), target[idx])
            loss.backward()
            opt.step()
        sched.step()
    model.eval()


def export(model, path: Path, shape=(1, 1, 8, 8), output: str = "logits") -> None:
    """Export with the TorchScript exporter (opset 17, dynamic batch) from an example input of `shape`."""
    import torch

    torch.onnx.export(
        model, (torch.zeros(*shape),), str(path), input_names=["input"],
        output_names=[output], dynamic_axes={"input": {0: "batch"}, output: {0: "batch"}},
        opset_version=17, dynamo=False,
    )


def hawq_factory(batch_size: int = 64, samples: int = 256):
    """For `onnx-hawq sensitivity --torch`: (trained model, calibration batches, cross-entropy).

    The batches are the first `samples` training images (those of ``digits_calib.npz``) with
    their labels, as (images, labels) tensor pairs.
    """
    import torch

    model = build_model()
    model.load_state_dict(torch.load(HERE / "digits_resnet.pt", weights_only=True))
    model.eval()
    train_x, train_y, _, _ = load_digits_split()
    x, y = torch.from_numpy(train_x[:samples]), torch.from_numpy(train_y[:samples])
    batches = list(zip(x.split(batch_size), y.split(batch_size)))
    return model, batches, torch.nn.functional.cross_entropy


def train_and_export(name: str, train_fn, epochs: int, description: str, argv=None):
    """The samples' command line (--epochs, --out): train, write NAME.onnx and NAME.json (the held-out
    accuracy), print it; returns (output folder, trained model)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model, acc = train_fn(args.epochs)
    export(model, args.out / f"{name}.onnx")
    (args.out / f"{name}.json").write_text(json.dumps({"fp32_test_accuracy": acc}, indent=2))
    print(f"fp32 test accuracy: {acc:.4f} ({len(load_digits_split()[3])} held-out images)")
    return args.out, model


def main(argv=None) -> None:
    import torch

    out, model = train_and_export("digits_resnet", train, 40, __doc__.splitlines()[0], argv)
    train_x, _, test_x, test_y = load_digits_split()
    np.savez_compressed(out / "digits_calib.npz", input=train_x[:256])
    np.savez_compressed(out / "digits_test.npz", input=test_x, label=test_y)
    torch.save(model.state_dict(), out / "digits_resnet.pt")


if __name__ == "__main__":
    main()
