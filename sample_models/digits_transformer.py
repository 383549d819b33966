"""Train a tiny transformer encoder on scikit-learn's digits and export it to ONNX.

Each image row is a token (8 tokens of 8 pixels): linear embedding + learned positions, two
post-norm encoder blocks (4-head attention, GELU feed-forward, LayerNorm), mean pooling, linear
head. Explicit ops (no fused attention kernels), so the TorchScript export holds the MatMul +
bias Add, Softmax, Erf and LayerNormalization nodes of a real transformer. Uses the same split and
data files as ``digits_resnet.py`` (``digits_calib.npz``, ``digits_test.npz``).
Writes ``digits_transformer.onnx`` and ``digits_transformer.json`` next to this file. Seeded.
Run: ``python sample_models/digits_transformer.py [--epochs N] [--out DIR]``.
"""

from __future__ import annotations

import math

from digits_resnet import SEED, fit, train_and_export  # noqa: E402  (run from this folder or sys.path)

WIDTH, HEADS, BLOCKS, FFN = 32, 4, 2, 64


def build_model():
    """The tiny encoder classifier (imports torch)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(WIDTH, WIDTH) for _ in range(3))
            self.out, self.norm1, self.norm2 = nn.Linear(WIDTH, WIDTH), nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
            self.up, self.down = nn.Linear(WIDTH, FFN), nn.Linear(FFN, WIDTH)

        def heads(self, x):
            return x.reshape(x.shape[0], x.shape[1], HEADS, WIDTH // HEADS).transpose(1, 2)

        def forward(self, x):
            q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(WIDTH // HEADS), dim=-1)
            ctx = (att @ v).transpose(1, 2).reshape(x.shape)
            x = self.norm1(x + self.out(ctx))
            return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))

    class DigitsTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(8, WIDTH)
            self.pos = nn.Parameter(torch.zeros(1, 8, WIDTH))
            self.blocks = nn.Sequential(*(Block() for _ in range(BLOCKS)))
            self.fc = nn.Linear(WIDTH, 10)

        def forward(self, images):
            x = self.embed(images.reshape(images.shape[0], 8, 8)) + self.pos
            return self.fc(self.blocks(x).mean(dim=1))

    return DigitsTransformer()


def train(epochs: int, seed: int = SEED):
    """Train with AdamW and return (model, test accuracy)."""
    import torch

    torch.manual_seed(seed)
    return fit(build_model(), epochs, seed, torch.optim.AdamW)


def main(argv=None) -> None:
    train_and_export("digits_transformer", train, 120, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
