"""UpdateSpeed's rules (docs/reference.md §11): the body table, every bad input of issue 21 with
its path, the order-free comparison, and the `--rules` compact syntax with each mistake."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchsms.errors import UsageError
from batchsms.lines.bodies import canonical_json
from batchsms.lines.schema import Field, Kind, ObjectSpec, validate
from batchsms.lines.speed_rules import (
    SPEED_LIMIT,
    SPEED_LIMIT_RULE,
    canonical_rules,
    parse_rules,
    rules_change,
    rules_of_answer,
    rules_option,
    same_rules,
    undo_line,
    validate_speed_limit,
)
from tests.properties import BOUNDED, any_values, check_problems, from_spec, has_null

EXAMPLE = [  # the reference page's example
    {"start": "00:00", "end": "08:00", "speed": 20},
    {"start": "08:00", "end": "15:00", "speed": 50},
    {"start": "15:00", "end": "23:59", "speed": 25},
]


def rule(start: str = "01:00", end: str = "02:00", speed: object = 100,
         **extra: object) -> dict[str, Any]:
    return {"start": start, "end": end, "speed": speed, **extra}


def problems_of(body: object) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in validate_speed_limit(body)[1]]


# -- the tables ---------------------------------------------------------------------------------

def test_tables_match_the_reference_page() -> None:
    """An independent transcription of §11's table: kinds, limits, what is required."""
    rows = {key: (f.kind, f.minimum, f.maximum, f.required)
            for key, f in SPEED_LIMIT_RULE.fields.items()}
    assert rows == {
        "start": (Kind.STRING, 0, 0, True),
        "end": (Kind.STRING, 0, 0, True),
        "speed": (Kind.INTEGER, 0, 1000, True),
        "over_speed_threshold": (Kind.NUMBER, 10, 100, False),
    }
    top = SPEED_LIMIT.fields["speed_limit"]
    assert (top.kind, top.min_len, top.max_len, top.required, top.spec) == (
        Kind.ARRAY, 0, 5, True, SPEED_LIMIT_RULE)


@pytest.mark.parametrize("rules", [[], EXAMPLE, [rule(over_speed_threshold=10)],
                                   [rule(over_speed_threshold=100.0)],
                                   [rule(over_speed_threshold=55.5, speed=0)],
                                   [rule("00:00", "23:59", 1000)],
                                   [rule(f"0{i}:00", f"0{i + 1}:00") for i in range(5)]])
def test_valid_bodies_pass_unchanged(rules: list[dict[str, Any]]) -> None:
    """The reference example, an empty list (clears), touching windows, the limits."""
    assert validate_speed_limit({"speed_limit": rules}) == ({"speed_limit": rules}, [])


def test_nulls_are_dropped() -> None:
    """null means absent, as for UpdateTask: an optional null threshold is not sent."""
    clean, problems = validate_speed_limit({"speed_limit": [rule(over_speed_threshold=None)]})
    assert (clean, problems) == ({"speed_limit": [rule()]}, [])


HH_MM = "must be a time HH:MM from 00:00 to 23:59, two digits each, got "
BAD = [  # (what, body, [(path, message starts with)]) - issue 21's "Bad input", one per kind
    ("6 rules", {"speed_limit": [rule(f"0{i}:00", f"0{i}:30") for i in range(6)]},
     [("body.speed_limit", "must have 0 to 5 items, got 6")]),
    ("24:00", {"speed_limit": [rule(end="24:00")]},
     [("body.speed_limit[0].end", HH_MM + "'24:00'")]),
    ("8:00", {"speed_limit": [rule(start="8:00", end="09:00")]},
     [("body.speed_limit[0].start", HH_MM + "'8:00'")]),
    ("08:60", {"speed_limit": [rule(start="08:60", end="09:00")]},
     [("body.speed_limit[0].start", HH_MM + "'08:60'")]),
    ("start equal to end", {"speed_limit": [rule("09:00", "09:00")]},
     [("body.speed_limit[0].end", "must be after start (09:00): the window 09:00-09:00 is "
       "empty")]),
    ("across midnight", {"speed_limit": [rule("22:00", "06:00")]},
     [("body.speed_limit[0].end", "is before start (22:00): a window across midnight must be "
       "split into two rules, 22:00-23:59 and 00:00-06:00")]),
    ("overlap", {"speed_limit": [rule("08:00", "12:00"), rule("00:00", "08:30")]},
     [("body.speed_limit[0]", "window 08:00-12:00 overlaps rule [1] (00:00-08:30): windows "
       "may touch (one ending where the next starts) but not overlap")]),
    ("speed 1001", {"speed_limit": [rule(speed=1001)]},
     [("body.speed_limit[0].speed", "must be between 0 and 1000, got 1001")]),
    ("speed '100'", {"speed_limit": [rule(speed="100")]},
     [("body.speed_limit[0].speed", "must be an integer (Integer), got a string")]),
    ("speed 1.5", {"speed_limit": [rule(speed=1.5)]},
     [("body.speed_limit[0].speed", "must be an integer (Integer), got a number with a "
       "fraction or exponent")]),
    ("speed true", {"speed_limit": [rule(speed=True)]},
     [("body.speed_limit[0].speed", "must be an integer (Integer), got a boolean")]),
    ("threshold 5", {"speed_limit": [rule(over_speed_threshold=5)]},
     [("body.speed_limit[0].over_speed_threshold", "must be between 10 and 100, got 5")]),
    ("threshold 101", {"speed_limit": [rule(over_speed_threshold=101)]},
     [("body.speed_limit[0].over_speed_threshold", "must be between 10 and 100, got 101")]),
    ("threshold '50'", {"speed_limit": [rule(over_speed_threshold="50")]},
     [("body.speed_limit[0].over_speed_threshold", "must be a number, got a string")]),
    ("unknown key in a rule", {"speed_limit": [rule(sped=1)]},
     [("body.speed_limit[0].sped", "unknown field 'sped' (not in SpeedLimitlJson); did you "
       "mean 'speed'?")]),
    ("speed_limits at the top", {"speed_limits": []},
     [("body.speed_limits", "unknown field 'speed_limits' (not in SpeedLimit); did you mean "
       "'speed_limit'?"), ("body.speed_limit", "required in every SpeedLimit")]),
    ("a rule not an object", {"speed_limit": ["00:00-01:00=5"]},
     [("body.speed_limit[0]", "must be an object (SpeedLimitlJson), got a string")]),
    ("a null rule", {"speed_limit": [None]},
     [("body.speed_limit[0]", "must be an object (SpeedLimitlJson), got null")]),
    ("speed_limit not an array", {"speed_limit": 100},
     [("body.speed_limit", "must be an array of SpeedLimitlJson objects, got an integer")]),
    ("empty body", {}, [("body.speed_limit", "required in every SpeedLimit")]),
    ("missing start and speed", {"speed_limit": [{"end": "01:00"}]},
     [("body.speed_limit[0].start", "required in every SpeedLimitlJson"),
      ("body.speed_limit[0].speed", "required in every SpeedLimitlJson")]),
    ("start a number", {"speed_limit": [rule(start=800)]},
     [("body.speed_limit[0].start", "must be a string, got an integer")]),
    ("body not an object", [], [("body", "must be an object (SpeedLimit), got an array")]),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in BAD],
                         ids=[what for what, _, _ in BAD])
def test_bad_input_is_reported_with_its_path(body: object,
                                             expected: list[tuple[str, str]]) -> None:
    """Each mistake of issue 21's list: exactly these problems, each under body.speed_limit."""
    assert problems_of(body) == expected


def test_every_problem_of_a_body_is_reported() -> None:
    """One body with a mistake per rule: every one reported, none hiding another."""
    body = {"speed_limit": [
        rule("8:00", "09:00"), rule("10:00", "10:00", speed=True),
        rule("20:00", "02:00", over_speed_threshold=5), rule("11:00", "13:00", x=1),
        rule("12:00", "14:00", speed=1001),
    ]}
    paths = [path for path, _ in problems_of(body)]
    assert sorted(paths) == sorted([
        "body.speed_limit[0].start", "body.speed_limit[1].speed", "body.speed_limit[1].end",
        "body.speed_limit[2].over_speed_threshold", "body.speed_limit[2].end",
        "body.speed_limit[3].x", "body.speed_limit[4].speed", "body.speed_limit[4]",
    ])


def test_overlaps_are_found_in_any_order() -> None:
    """A window inside another, and chains: each overlapping rule named once, touching ones
    never."""
    body = {"speed_limit": [rule("00:00", "23:59"), rule("03:00", "04:00"),
                            rule("04:00", "05:00")]}
    assert [path for path, _ in problems_of(body)] == ["body.speed_limit[1]",
                                                       "body.speed_limit[2]"]


def test_a_long_hostile_list_is_checked_in_n_log_n() -> None:
    """20,000 overlapping rules (a 1 MiB line holds that many): the count and every overlap
    reported, quickly."""
    rules = [rule("00:00", "23:59")] * 20_000
    problems = problems_of({"speed_limit": rules})
    assert problems[0] == ("body.speed_limit", "must have 0 to 5 items, got 20000")
    assert len(problems) == 20_000


@given(st.lists(st.tuples(st.integers(0, 1439), st.integers(0, 1439)), max_size=5))
def test_windows_agree_with_a_minute_by_minute_model(spans: list[tuple[int, int]]) -> None:
    """A list passes the cross-rule checks iff every window is non-empty, forward, and no
    minute belongs to two windows (an independent model)."""
    rules = [rule(f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}")
             for a, b in spans]
    forward = all(a < b for a, b in spans)
    minutes = [m for a, b in spans for m in range(a, b)]
    model_ok = forward and len(minutes) == len(set(minutes))
    assert (problems_of({"speed_limit": rules}) == []) == model_ok


@BOUNDED
@given(any_values | st.fixed_dictionaries({"speed_limit": st.lists(
    from_spec(SPEED_LIMIT_RULE) | st.builds(rule, st.sampled_from(["00:00", "08:00", "9:00"]),
                                            st.sampled_from(["08:00", "23:59", "24:00"]),
                                            st.integers(-1, 1001)), max_size=6)}))
def test_any_value_gets_problems_or_a_body_that_round_trips(body: object) -> None:
    """Whatever it is given, the validator answers (never raises): problems under `body`, or a
    body without nulls whose canonical bytes validate again to the same bytes."""
    clean, problems = validate_speed_limit(body)
    check_problems(problems, {"body"})
    if not problems:
        assert not has_null(clean)
        data = canonical_json(clean)
        again, problems_again = validate_speed_limit(orjson.loads(data))
        assert (canonical_json(again), problems_again) == (data, [])


def test_number_kind_and_required_on_a_synthetic_table() -> None:
    """The walker's two additions, alone: a Number takes ints and floats within its limits, not
    booleans or strings; a required field missing or null is named."""
    spec = ObjectSpec("T", {"n": Field(Kind.NUMBER, minimum=1, maximum=2),
                            "r": Field(Kind.BOOLEAN, required=True)})
    assert validate({"n": 1.5, "r": True}, spec=spec)[1] == []
    _, problems = validate({"n": False, "r": None}, spec=spec)
    assert [(p.path, p.message) for p in problems] == [
        ("body.n", "must be a number, got a boolean"), ("body.r", "required in every T")]


# -- comparing ----------------------------------------------------------------------------------

def test_same_rules_is_order_free_and_by_value() -> None:
    """Order, 20 vs 20.0, and a null threshold vs an absent one make no difference."""
    shuffled = [{**EXAMPLE[2], "speed": 25.0}, EXAMPLE[0],
                {**EXAMPLE[1], "over_speed_threshold": None}]
    assert same_rules(EXAMPLE, shuffled)
    assert canonical_rules(EXAMPLE) == canonical_rules(shuffled)
    assert same_rules([], [])
    assert not same_rules([{"start": "00:00", "end": "01:00", "speed": 1}],
                          [{"start": "00:00", "end": "01:00", "speed": True}])


@pytest.mark.parametrize("other", [
    [],
    EXAMPLE[:2],
    [EXAMPLE[0], EXAMPLE[1], {**EXAMPLE[2], "speed": 26}],
    [EXAMPLE[0], EXAMPLE[1], {**EXAMPLE[2], "end": "23:58"}],
    [EXAMPLE[0], EXAMPLE[1], {**EXAMPLE[2], "over_speed_threshold": 50}],
    [*EXAMPLE, EXAMPLE[0]],
    [EXAMPLE[0], EXAMPLE[1], {**EXAMPLE[2], "speed": "25"}],
])
def test_different_rule_lists_differ(other: list[dict[str, Any]]) -> None:
    """A missing, extra, or changed rule (window, speed, threshold) is a difference."""
    assert not same_rules(EXAMPLE, other)


# -- --rules ------------------------------------------------------------------------------------

def test_the_issue_example_parses() -> None:
    """Issue 21's example: three rules, the middle one with a threshold."""
    assert rules_option("00:00-07:59=1000,08:00-19:59=100@50,20:00-23:59=1000") == {
        "speed_limit": [{"start": "00:00", "end": "07:59", "speed": 1000},
                        {"start": "08:00", "end": "19:59", "speed": 100,
                         "over_speed_threshold": 50},
                        {"start": "20:00", "end": "23:59", "speed": 1000}]}


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_string_clears_the_rules(text: str) -> None:
    """'' (or only spaces) is the empty list: the task's rules are cleared."""
    assert rules_option(text) == {"speed_limit": []}


def test_spaces_between_tokens_and_fractions() -> None:
    """Spaces are allowed around tokens; a threshold may have a fraction."""
    assert parse_rules(" 00:00 - 01:00 = 5 @ 12.5 , 01:00-02:00=0 ") == [
        {"start": "00:00", "end": "01:00", "speed": 5, "over_speed_threshold": 12.5},
        {"start": "01:00", "end": "02:00", "speed": 0}]


PARSE_ERRORS = [  # (text, position, expected ..., found ...)
    ("x", 1, "a start time HH:MM", "'x'"),
    ("00:00", 6, "'-' between the start and the end time", "the end of the text"),
    ("00:00=5", 6, "'-' between the start and the end time", "'='"),
    ("00:00-", 7, "an end time HH:MM", "the end of the text"),
    ("00:00-01", 7, "an end time HH:MM", "'0'"),
    ("00:00-01:00", 12, "'=' and the speed in Mbit/s after the window", "the end of the text"),
    ("00:00-01:00=", 13, "a speed in Mbit/s", "the end of the text"),
    ("00:00-01:00=fast", 13, "a speed in Mbit/s", "'f'"),
    ("00:00-01:00=-5", 13, "a speed in Mbit/s", "'-'"),
    ("00:00-01:00=5@", 15, "an over-speed threshold in percent after '@'",
     "the end of the text"),
    ("00:00-01:00=5;01:00-02:00=5", 14, "'@' and a threshold, ',' and the next rule, or the "
     "end", "';'"),
    ("00:00-01:00=5@50@60", 17, "',' and the next rule, or the end", "'@'"),
    ("00:00-01:00=5,", 15, "a start time HH:MM", "the end of the text"),
    ("00:00-01:00=5,,", 15, "a start time HH:MM", "','"),
]


@pytest.mark.parametrize(("text", "position", "expected", "found"), PARSE_ERRORS,
                         ids=[t for t, *_ in PARSE_ERRORS])
def test_each_parse_mistake_names_its_position(text: str, position: int, expected: str,
                                               found: str) -> None:
    """A string that does not parse: UsageError (exit 2) with the 1-based character position,
    what was expected there and what was found."""
    with pytest.raises(UsageError) as caught:
        rules_option(text)
    assert str(caught.value) == (f"--rules {text!r}: at character {position}: expected "
                                 f"{expected}, found {found}")


CHECK_ERRORS = [  # parses, but the validator refuses it: the same messages as a line's body
    ("8:00-09:00=5", "rule 1 (8:00-09:00=5): body.speed_limit[0].start: " + HH_MM + "'8:00'"),
    ("00:00-24:00=5", "rule 1 (00:00-24:00=5): body.speed_limit[0].end: " + HH_MM + "'24:00'"),
    ("00:00-01:00=1.5", "rule 1 (00:00-01:00=1.5): body.speed_limit[0].speed: must be an "
     "integer (Integer), got a number with a fraction or exponent"),
    ("00:00-01:00=1001", "rule 1 (00:00-01:00=1001): body.speed_limit[0].speed: must be "
     "between 0 and 1000, got 1001"),
    ("00:00-01:00=5@5", "rule 1 (00:00-01:00=5@5): body.speed_limit[0].over_speed_threshold: "
     "must be between 10 and 100, got 5"),
    ("22:00-06:00=5", "rule 1 (22:00-06:00=5): body.speed_limit[0].end: is before start "
     "(22:00): a window across midnight must be split into two rules, 22:00-23:59 and "
     "00:00-06:00"),
    ("00:00-09:00=5,08:00-10:00=1", "rule 2 (08:00-10:00=1): body.speed_limit[1]: window "
     "08:00-10:00 overlaps rule [0] (00:00-09:00): windows may touch (one ending where the "
     "next starts) but not overlap"),
    (",".join(f"0{i}:00-0{i}:30=1" for i in range(6)),
     "body.speed_limit: must have 0 to 5 items, got 6"),
]


@pytest.mark.parametrize(("text", "message"), CHECK_ERRORS, ids=[t for t, _ in CHECK_ERRORS])
def test_each_rule_mistake_gives_the_validators_message(text: str, message: str) -> None:
    """What parses goes through validate_speed_limit: the rule's own text, then the message a
    line in a file would get."""
    with pytest.raises(UsageError) as caught:
        rules_option(text)
    assert str(caught.value) == f"--rules {text!r}: {message}"


@given(st.lists(st.tuples(st.integers(0, 1439), st.integers(0, 1439), st.integers(0, 1000),
                          st.none() | st.integers(10, 100)), max_size=5))
def test_rules_round_trip_through_the_compact_form(
        rows: list[tuple[int, int, int, int | None]]) -> None:
    """Any rule list written in the compact form parses back to itself."""
    def clock(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    rules = [{"start": clock(a), "end": clock(b), "speed": s}
             | ({} if t is None else {"over_speed_threshold": t}) for a, b, s, t in rows]
    text = ",".join(f"{r['start']}-{r['end']}={r['speed']}"
                    + (f"@{r['over_speed_threshold']}" if "over_speed_threshold" in r else "")
                    for r in rules)
    assert parse_rules(text) == rules


# -- reading answers, plan's change, the undo line -----------------------------------------------

@pytest.mark.parametrize(("answer", "rules"), [
    ({"speed_limit": EXAMPLE}, EXAMPLE),
    ({"speed_limit": [{**EXAMPLE[0], "over_speed_threshold": None}]}, EXAMPLE[:1]),
    ({"speed_limit": []}, []),
    ({"speed_limit": None}, []),
    ({}, []),
    ([], None),
    ("x", None),
    ({"speed_limit": {}}, None),
    ({"speed_limit": [EXAMPLE[0], None]}, None),
    ({"speed_limit": "00:00-01:00"}, None),
])
def test_rules_of_answer_trusts_only_the_shape(answer: object, rules: object) -> None:
    """A ShowsSpeedLimits answer is the task's rules only when it has their shape; a broken
    answer is never taken for a task without rules."""
    assert rules_of_answer(answer) == rules


def test_rules_change_is_one_field_shown_whole() -> None:
    """plan's changes.speed_limit: from/to whole lists, nothing when they are the same."""
    reordered = [EXAMPLE[1], EXAMPLE[0], {**EXAMPLE[2], "speed": 25.0}]
    assert rules_change(EXAMPLE, reordered) is None
    assert rules_change([], EXAMPLE) == {"from": [], "to": EXAMPLE}
    assert rules_change(EXAMPLE, []) == {"from": EXAMPLE, "to": []}


def test_undo_line_restores_the_whole_previous_list() -> None:
    """The undo line: op speed-limit, the previous list (empty included) as body, the written
    list as expect; it passes the checks a speed-limit line gets."""
    line = undo_line("t1", "web-01", [], EXAMPLE)
    assert line == {"task_id": "t1", "op": "speed-limit", "ref": "web-01",
                    "body": {"speed_limit": []}, "expect": {"speed_limit": EXAMPLE}}
    for part in ("body", "expect"):
        assert validate_speed_limit(line[part])[1] == []
