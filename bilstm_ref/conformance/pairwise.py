"""All-pairs test selection: every pair of parameter values that a valid case can hold, covered."""

from __future__ import annotations

import itertools
import random
from typing import Any, Callable, Mapping, Sequence

__all__ = ["all_pairs"]

Combo = dict[str, Any]


def _pairs(combo: Mapping[str, Any], names: Sequence[str]) -> set[tuple[str, Any, str, Any]]:
    return {(a, combo[a], b, combo[b]) for a, b in itertools.combinations(names, 2)}


def _gain(combo: Combo, n: str, v: Any, order: Mapping[str, int], uncovered: set[Any]) -> int:
    """How many uncovered pairs setting parameter ``n`` to ``v`` would cover, given ``combo``."""
    return sum(
        ((a, combo[a], n, v) if order[a] < order[n] else (n, v, a, combo[a])) in uncovered for a in combo
    )


def all_pairs(
    params: Mapping[str, Sequence[Any]],
    valid: Callable[[Combo], bool],
    seed: int = 0,
    tries: int = 40,
) -> list[Combo]:
    """A small list of combinations covering every feasible pair of parameter values.

    Greedy (AETG-style): each new combination starts from the first uncovered pair and fills the
    other parameters with the values that cover most new pairs among those ``valid`` accepts;
    ``valid`` is also called on partial combinations and must accept one that some completion
    makes valid. A pair no valid combination can hold (after ``tries`` attempts) is dropped as
    infeasible. Deterministic for a given ``seed``.
    """
    names = list(params)
    uncovered = set().union(
        *(
            {(a, va, b, vb) for va in params[a] for vb in params[b]}
            for a, b in itertools.combinations(names, 2)
        )
    )
    order = {n: i for i, n in enumerate(names)}

    def key(p: tuple[str, Any, str, Any]) -> tuple[int, str, int, str]:
        return (order[p[0]], repr(p[1]), order[p[2]], repr(p[3]))

    rng = random.Random(seed)
    result: list[Combo] = []
    while uncovered:
        first = min(uncovered, key=key)
        best: Combo | None = None
        best_gain = -1
        for _ in range(tries):
            combo: Combo = {first[0]: first[1], first[2]: first[3]}
            rest = [n for n in names if n not in combo]
            rng.shuffle(rest)
            for n in rest:
                values = list(params[n])
                rng.shuffle(values)
                values.sort(key=lambda v: _gain(combo, n, v, order, uncovered), reverse=True)
                choice = next((v for v in values if valid({**combo, n: v})), None)
                if choice is None:
                    break
                combo[n] = choice
            if len(combo) < len(names) or not valid(combo):
                continue
            g = len(_pairs(combo, names) & uncovered)
            if g > best_gain:
                best, best_gain = combo, g
        if best is None:
            uncovered.discard(first)  # infeasible under `valid`
            continue
        result.append(best)
        uncovered -= _pairs(best, names)
    return result
