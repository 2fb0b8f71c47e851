"""Hypothesis strategies and checks shared by the property tests of the reader
(`test_records.py`), the validator (`test_schema.py`) and the planner (`test_plan.py`).

Every property runs a bounded, derandomised number of examples with no deadline, so a run is
repeatable and CI-friendly. `examples(n)` is that number: a tenth of a property's full budget `n`
(20 at least) in the README's test command (the default suite stays fast: at a third these
properties were ~7 s of its ~110 s of CPU), the whole of it with `BATCHSMS_PROPERTY_EXAMPLES=full`,
which CI's coverage run sets.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from batchsms.lines.bodies import canonical_json
from batchsms.lines.schema import PUT_TASK_REQ, Field, Kind, ObjectSpec, Problem, validate

FULL_BUDGET = os.environ.get("BATCHSMS_PROPERTY_EXAMPLES") == "full"


def examples(full: int) -> int:
    """The number of examples a property whose full budget is `full` runs now."""
    return full if FULL_BUDGET else max(20, full // 10)


BOUNDED = settings(max_examples=examples(300), deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _all_names(spec: ObjectSpec, seen: set[str]) -> set[str]:
    for name, f in spec.fields.items():
        seen.add(name)
        if f.spec is not None:
            _all_names(f.spec, seen)
    return seen


FIELD_NAMES = sorted(_all_names(PUT_TASK_REQ, set()))
keys = st.sampled_from([*FIELD_NAMES, "task_id", "body", "ref"]) | st.text(max_size=10)
json_scalars = (st.none() | st.booleans()
                | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # as orjson reads them
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
                | st.sampled_from(["MBR", "GPT", "LINUX", "BIOS", "OS", "", "1.2.3.4", "::1",
                                   "a b"]))


def _nested(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(keys, children, max_size=6), max_leaves=40)


# what a line can hold, as orjson reads (and writes) it
json_values = _nested(json_scalars)
# and beyond, as Python could hand it to the validator: integers past 64 bits, NaN, infinities
any_values = _nested(json_scalars | st.integers(min_value=-(10**40), max_value=10**40)
                     | st.floats())


def from_field(f: Field) -> st.SearchStrategy[Any]:
    """Mostly values the field accepts, sometimes not, sometimes null."""
    kind = f.kind
    if kind is Kind.STRING:
        fits = (st.sampled_from(sorted(f.choices)) if f.choices else
                st.text(min_size=f.min_len, max_size=min(f.max_len, 12)))
        wrong = st.text(max_size=3) | st.integers(0, 9)
    elif kind in (Kind.INTEGER, Kind.LONG):
        fits = st.integers(f.minimum, f.maximum)
        wrong = st.sampled_from([f.maximum + 1, -1, True, 1.0, "1"])
    elif kind is Kind.BOOLEAN:
        fits, wrong = st.booleans(), st.sampled_from([0, "true"])
    elif kind is Kind.NUMBER:
        fits = st.integers(f.minimum, f.maximum) | st.floats(f.minimum, f.maximum)
        wrong = st.sampled_from([f.maximum + 1, f.minimum - 0.5, True, "1"])
    else:
        assert f.spec is not None
        one = from_spec(f.spec)
        fits = one if kind is Kind.OBJECT else st.lists(one, max_size=2)
        wrong = st.sampled_from([[], {}, None, [None], 1]) if kind is Kind.ARRAY else \
            st.sampled_from([[], 1])
    return st.one_of(fits, fits, fits, wrong, st.none())


def from_spec(spec: ObjectSpec) -> st.SearchStrategy[dict[str, Any]]:
    """Objects of one table, built from the schema's own fields."""
    return st.fixed_dictionaries({}, optional={k: from_field(f) for k, f in spec.fields.items()})


def has_null(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(has_null(v) for v in value)
    return False


def check_problems(problems: object, roots: set[str]) -> None:
    """Problems are `Problem`s with a message, each at a path under one of `roots`."""
    assert isinstance(problems, list | tuple)
    for p in problems:
        assert isinstance(p, Problem)
        assert isinstance(p.path, str)
        assert isinstance(p.message, str)
        assert p.message
        assert p.path in roots or p.path.split(".")[0].split("[")[0] in roots, p


def check_body(body: object) -> bool:
    """validate(body): problems under `body`, or (returns True) a body that round-trips: its
    canonical bytes re-validate with no problems to the same bytes, with no nulls left."""
    clean, problems = validate(body)
    assert isinstance(clean, dict)
    check_problems(problems, {"body"})
    if problems:
        return False
    assert clean  # an empty body is "nothing to update", a problem
    data = canonical_json(clean)
    again, problems_again = validate(orjson.loads(data))
    assert problems_again == [], problems_again
    assert canonical_json(again) == data  # idempotent: same bytes, same body_sha256
    assert not has_null(orjson.loads(data))  # nulls are dropped, never sent
    return True
