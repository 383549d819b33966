"""Train a tiny MobileNetV3-style CNN on scikit-learn's digits and export it to ONNX.

HardSwish stem; inverted-residual blocks (1x1 expand, 3x3 depthwise, squeeze-excite with a
HardSigmoid gate, 1x1 project, residual Add) with HardSwish, and one block with SiLU
(x * Sigmoid(x) in the export); global average pool, linear head. The TorchScript export holds the
HardSwish, HardSigmoid, Sigmoid, Mul and GlobalAveragePool nodes of a real MobileNetV3 / EfficientNet.
Uses the split and data files of ``digits_resnet.py``; writes ``digits_mobilenet.onnx`` and
``digits_mobilenet.json`` next to this file. Seeded.
Run: ``python sample_models/digits_mobilenet.py [--epochs N] [--out DIR]``.
"""

from __future__ import annotations

from digits_resnet import SEED, fit, train_and_export  # noqa: E402  (run from this folder or sys.path)

BLOCKS = ((16, 32, 16, "hardswish"), (16, 48, 24, "silu"), (24, 64, 24, "hardswish"))  # in, expand, out, act


def build_model():
    """The tiny MobileNetV3-style classifier (imports torch)."""
    from torch import nn

    act = {"hardswish": nn.Hardswish, "silu": nn.SiLU}

    def conv_bn(cin, cout, k, groups=1, activation=None):
        layers = [nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, *([act[activation]()] if activation else []))

    class Block(nn.Module):
        def __init__(self, cin, mid, cout, activation):
            super().__init__()
            self.expand = conv_bn(cin, mid, 1, activation=activation)
            self.depthwise = conv_bn(mid, mid, 3, groups=mid, activation=activation)
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, mid // 4, 1), nn.ReLU(),
                                    nn.Conv2d(mid // 4, mid, 1), nn.Hardsigmoid())
            self.project = conv_bn(mid, cout, 1)
            self.residual = cin == cout

        def forward(self, x):
            h = self.depthwise(self.expand(x))
            h = self.project(h * self.se(h))
            return x + h if self.residual else h

    return nn.Sequential(conv_bn(1, 16, 3, activation="hardswish"), *(Block(*b) for b in BLOCKS),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(BLOCKS[-1][2], 10))


def train(epochs: int, seed: int = SEED):
    """Train with Adam and return (model, test accuracy)."""
    import torch

    torch.manual_seed(seed)
    return fit(build_model(), epochs, seed)


def main(argv=None) -> None:
    train_and_export("digits_mobilenet", train, 30, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
