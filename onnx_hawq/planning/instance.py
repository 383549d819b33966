"""From a model, a sensitivity file and a PlanConfig to the integer program's data."""

from __future__ import annotations

import dataclasses
import logging

import onnx

from onnx_hawq.calibration.sensitivity_file import Sensitivity
from onnx_hawq.errors import InputError, close_matches
from onnx_hawq.layers import Layer, find_layers
from onnx_hawq.model_io import load_model
from onnx_hawq.plans import LayerBits
from onnx_hawq.planning import ilp
from onnx_hawq.planning.config import PlanConfig
from onnx_hawq.arith.quantizer import Rounding, WeightQuant
from onnx_hawq.planning.costs import bops, candidate_choices, perturbations, size_bytes, weight_error_table
from onnx_hawq.planning.latency import LatencyTable
from onnx_hawq.planning.residual import residual_ties

W8A8 = LayerBits(8, 8)
log = logging.getLogger("onnx_hawq")


@dataclasses.dataclass(frozen=True)
class Instance:
    """The prepared model's layers, the global choice list and the limit-free problem."""

    layers: tuple[Layer, ...]
    choices: tuple[LayerBits, ...]
    problem: ilp.Problem
    all8: dict[str, int]  # resource -> use of the W8A8 model
    ties: tuple[tuple[str, ...], ...]
    weights: WeightQuant  # the weight quantizer Ω measured


def plan_weights(cfg: PlanConfig, sens: Sensitivity) -> WeightQuant:
    """The plan's weight quantizer: the options, else a perturbation file's, else the defaults."""
    if sens.method != "perturbation":
        return cfg.weight_quant()
    from onnx_hawq.calibration.perturbation import measured_weights

    return cfg.weight_quant(measured_weights(sens))


def load_prepared(path: str) -> tuple[onnx.ModelProto, list[Layer]]:
    """Load, prepare and list the quantizable layers of the model at `path`."""
    from onnx_hawq.transforms.prepare import prepare_model

    model = prepare_model(load_model(path))
    layers = find_layers(model)
    if not layers:
        raise InputError(f"{path} has no quantizable layers (Conv/Gemm/MatMul with constant weights)")
    return model, layers


def layer_lookup(layers) -> dict[str, str]:
    """Every name a user may give for a layer (name, weight, node, first, last) -> layer name."""
    names = {"first": layers[0].name, "last": layers[-1].name}
    for layer in reversed(layers):
        for key in (layer.node_name, layer.weight, layer.name):
            if key:
                names[key] = layer.name
    return names


def resolve_name(name: str, lookup: dict, layers, option: str) -> str:
    """A user-given layer name -> the layer's name; unknown names are InputErrors with hints."""
    if name not in lookup:
        raise InputError(f"{option}: no layer named {name!r}{close_matches(name, lookup)}")
    return lookup[name]


def pinned_choices(cfg: PlanConfig, layers) -> dict[str, tuple[LayerBits, ...]]:
    """Layer name -> the choices its pin allows; a layer pinned twice is an InputError."""
    lookup, out = layer_lookup(layers), {}
    for pin in cfg.pins:
        acts = (pin.a_bits,) if pin.a_bits else cfg.act_bits
        allowed = candidate_choices((pin.w_bits,), acts)
        for name in pin.names:
            layer = resolve_name(name, lookup, layers, "--pin")
            if layer in out and out[layer] != allowed:
                raise InputError(f"--pin: layer {layer} is pinned twice with different bits")
            out[layer] = allowed
    return out


def tie_names(cfg: PlanConfig, model, layers) -> tuple[tuple[str, ...], ...]:
    """User ties (resolved to layer names) plus residual ties when asked for."""
    lookup = layer_lookup(layers)
    ties = [tuple(resolve_name(n, lookup, layers, "--tie") for n in tie) for tie in cfg.ties]
    if cfg.tie_residual:
        ties += residual_ties(model, layers)
    return tuple(ties)


def allowed_indices(layers, choices, candidates, pins) -> tuple[tuple[int, ...], ...]:
    """Per layer, the indices into `choices` it may take (its pin's, else the candidates)."""
    index = {c: k for k, c in enumerate(choices)}
    return tuple(tuple(sorted(index[c] for c in pins.get(l.name, candidates))) for l in layers)


def check_groups(problem: ilp.Problem, layers, choices) -> None:
    """Refuse tie groups whose members' pins leave no common choice."""
    for group, allowed in zip(problem.groups, ilp.group_allowed(problem)):
        if not allowed:
            names = ", ".join(layers[i].name for i in group)
            raise InputError(f"tied layers {names} have pins with no bits in common")


def resource_costs(layers, choices, allowed, table: LatencyTable | None) -> tuple[ilp.Resource, ...]:
    """Size and BOPs always; latency (ns, from the table) when a table is given."""
    size = tuple(tuple(size_bytes(l, c.w_bits) for c in choices) for l in layers)
    bop = tuple(tuple(bops(l, c.w_bits, c.a_bits) for c in choices) for l in layers)
    out = [ilp.Resource("size", size), ilp.Resource("bops", bop)]
    if table is not None:
        lat = tuple(tuple(table.latency_ns(l.name, c.label()) if k in ok else 0 for k, c in enumerate(choices))
                    for l, ok in zip(layers, allowed))
        out.append(ilp.Resource("latency", lat))
    return tuple(out)


def all8_use(layers, table: LatencyTable | None) -> dict[str, int]:
    """Size, BOPs (and latency) of the model with every layer at W8A8: the base of N% limits."""
    out = {"size": sum(size_bytes(l, 8) for l in layers), "bops": sum(bops(l, 8, 8) for l in layers)}
    if table is not None:
        out["latency"] = sum(table.latency_ns(l.name, W8A8.label()) for l in layers)
    return out


def load_inputs(cfg: PlanConfig):
    """The prepared model, its layers, the checked sensitivity file and latency table, and the
    calibration data (None unless Ω needs it)."""
    model, layers = load_prepared(cfg.model)
    sens = Sensitivity.load(cfg.sensitivity, "sensitivity file")
    sens.check_model(layers)
    weights = plan_weights(cfg, sens)
    table = None
    if cfg.latency:
        table = LatencyTable.load(cfg.latency, "latency table")
        table.check_model(layers)
    elif cfg.max_latency is not None:
        raise InputError("--max-latency needs --latency latency.json (from `onnx-hawq profile`)")
    data = None
    if weights.rounding == Rounding.GPTQ and sens.method != "perturbation":
        from onnx_hawq.model_io import load_data

        data = load_data(cfg.calib, model, "calibration")
    return model, layers, sens, table, data


def build_instance(cfg: PlanConfig) -> Instance:
    """Read every input of `cfg` and set up the limit-free integer program."""
    return instance_of(cfg, *load_inputs(cfg))


def omega(cfg: PlanConfig, model: onnx.ModelProto, layers, sens: Sensitivity, choices, weights: WeightQuant,
          data=None):
    """Ω per layer and choice for the plan's weight quantizer (GPTQ errors from `data` when it rounds so)."""
    errors = None
    value = lambda l: getattr(sens.layers[l.name], "trace" if cfg.metric == "trace" else "eigenvalue") or 0.0
    if data is not None and weights.rounding == Rounding.GPTQ and any(value(l) > 0 for l in layers):
        errors = weight_error_table(model, layers, choices, weights, data)
    return perturbations(model, layers, sens, choices, cfg.metric, weights, errors)


def instance_of(cfg: PlanConfig, model: onnx.ModelProto, layers, sens: Sensitivity,
                table: LatencyTable | None = None, data: dict | None = None) -> Instance:
    """The limit-free integer program for a prepared model, its layers and checked sensitivities;
    `data`: calibration inputs for Ω under GPTQ rounding."""
    candidates = candidate_choices(cfg.bits, cfg.act_bits)
    if len(cfg.act_bits) > 1:
        log.warning("Ω counts weight perturbation only, so fewer activation bits never look worse to the "
                    "solver; activation bits are in effect chosen by the limits alone")
    pins = pinned_choices(cfg, layers)
    choices = tuple(sorted(set(candidates).union(*pins.values()), key=lambda c: (c.w_bits, c.a_bits)))
    allowed = allowed_indices(layers, choices, candidates, pins)
    ties = tie_names(cfg, model, layers)
    index = {l.name: i for i, l in enumerate(layers)}
    groups = ilp.tie_groups(len(layers), [[index[n] for n in tie] for tie in ties])
    weights = plan_weights(cfg, sens)
    problem = ilp.Problem(omega(cfg, model, layers, sens, choices, weights, data),
                          resource_costs(layers, choices, allowed, table), allowed, groups)
    check_groups(problem, layers, choices)
    return Instance(tuple(layers), choices, problem, all8_use(layers, table), ties, weights)
