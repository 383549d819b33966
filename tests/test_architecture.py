"""The package layering, read from the modules' own imports (function-level ones included):
no import from a lower layer to a higher one, no import between peer packages, no cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"onnx_hawq": ROOT / "onnx_hawq", "onnx_hawq.transforms": ROOT / "transforms",
           "onnx_hawq.calibration": ROOT / "calibration"}
# (unit, rank): a unit may import units of a lower rank; units of one rank are peers that may not
# import each other, except in the shared core ranks (0-2) where only cycles are refused
LAYERS = [
    ("onnx_hawq.version", 0), ("onnx_hawq.errors", 0), ("onnx_hawq.config", 0),
    ("onnx_hawq.arith", 1),
    ("onnx_hawq.model_io", 2), ("onnx_hawq.ort", 2), ("onnx_hawq.layers", 2), ("onnx_hawq.plans", 2),
    ("onnx_hawq.report", 2), ("onnx_hawq.reference", 2), ("onnx_hawq.value_ranges", 2), ("onnx_hawq.topology", 2),
    ("onnx_hawq.large_models", 2),
    ("onnx_hawq.transforms", 3),
    ("onnx_hawq.calibration", 4),
    ("onnx_hawq.quantization", 5), ("onnx_hawq.planning", 5),
    ("onnx_hawq.compiler", 6),
    ("onnx_hawq.validation", 7),
    ("onnx_hawq.pipeline", 8),
    ("onnx_hawq.api", 9), ("onnx_hawq", 10),
    ("onnx_hawq.cli", 11),
]
CORE = 2


def modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            if prefix == "onnx_hawq" and parts and parts[0] in ("transforms", "calibration"):
                continue
            out[name] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "onnx_hawq" or m.startswith("onnx_hawq.")}


def unit(module: str) -> tuple[str, int]:
    best = max((u for u in LAYERS if module == u[0] or module.startswith(u[0] + ".")), key=lambda u: len(u[0]))
    return best


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {i for i in imports(m, p) if i in mods and i != m} for m, p in mods.items()}


def test_every_module_has_a_layer():
    missing = [m for m in modules() if unit(m)[0] == "onnx_hawq" and m != "onnx_hawq"]
    assert missing == []


def test_no_upward_or_peer_import():
    bad = []
    for src, targets in graph().items():
        (su, sr) = unit(src)
        for dst in targets:
            (du, dr) = unit(dst)
            if dr > sr or (dr == sr and su != du and sr > CORE):
                bad.append(f"{src} -> {dst}")
    assert bad == []


def test_no_import_cycle_between_modules_or_units():
    g = graph()
    units: dict[str, set[str]] = {}
    for src, targets in g.items():
        units.setdefault(unit(src)[0], set()).update(unit(t)[0] for t in targets if unit(t)[0] != unit(src)[0])
    for edges in (g, units):
        state: dict[str, int] = {}

        def visit(n, trail):
            state[n] = 1
            for m in edges.get(n, ()):
                assert state.get(m) != 1, "import cycle: " + " -> ".join(trail + [n, m])
                if m not in state:
                    visit(m, trail + [n])
            state[n] = 2

        for n in list(edges):
            if n not in state:
                visit(n, [])
