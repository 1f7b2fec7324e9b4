"""What each candidate does: prune or not, then which quantization. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from optimodel.spec import Method, Optimization, QuantizationType


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str
    prune: bool
    quantization: QuantizationType | None


def _from_name(name: str) -> Recipe:
    prune = name.startswith("prune")
    kind = name.removeprefix("prune-").removeprefix("prune")
    quantization = QuantizationType(kind) if kind else None
    method = Method.PRUNE_QUANTIZE if prune and quantization else Method.PRUNE if prune else Method.QUANTIZE
    return Recipe(name=name, method=str(method), prune=prune, quantization=quantization)


def recipes_for(optimization: Optimization) -> list[Recipe]:
    """The candidates a spec asks for: one for a single method, several for `auto`."""
    quantization = QuantizationType(optimization.quantization.type)
    if optimization.method == Method.QUANTIZE:
        return [_from_name(str(quantization))]
    if optimization.method == Method.PRUNE:
        return [_from_name("prune")]
    if optimization.method == Method.PRUNE_QUANTIZE:
        return [_from_name(f"prune-{quantization}")]
    return [_from_name(str(name)) for name in optimization.auto_candidates()]
