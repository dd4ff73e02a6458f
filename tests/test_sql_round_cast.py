"""``CAST(ROUND(x) AS INT|BIGINT)`` of a DOUBLE compiles to one step (ROUND's fast path has the int
already): it must give what the two steps give, ROUND to a DOUBLE and then CAST of that."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from actorflow.sql.dialect import parse
from actorflow.sql.expressions import compile_expression
from actorflow.sql.types import DOUBLE, SqlType


def _compiled(sql: str, columns: dict[str, SqlType]):  # type: ignore[no-untyped-def]
    return compile_expression(parse(f"SELECT {sql}")[0].expressions[0], columns)


ONE_STEP = {kind: _compiled(f"CAST(ROUND(x * 100) AS {kind})", {"x": DOUBLE}) for kind in ("BIGINT", "INT")}
ROUND = _compiled("ROUND(x * 100)", {"x": DOUBLE})
TWO_STEPS = {kind: _compiled(f"CAST(r AS {kind})", {"r": DOUBLE}) for kind in ("BIGINT", "INT")}

DOUBLES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2e6, max_value=2e6),
    # Halves and their neighbours, where ROUND's fast path hands over to _sql_round.
    st.integers(min_value=-(10**8), max_value=10**8).map(lambda n: (n + 0.5) / 100),
    st.integers(min_value=-(10**8), max_value=10**8).map(lambda n: math.nextafter((n + 0.5) / 100, 0)),
    st.sampled_from([0.0, -0.0, 0.005, -0.005, 1e6, -1e6, 1e6 + 0.005, 9.3e16, -9.3e16, 2.5e7]),
)


def test_the_one_step_is_compiled_for_a_double() -> None:
    assert "float(" not in ONE_STEP["BIGINT"].source
    assert "int(" not in ONE_STEP["BIGINT"].source.replace("_sql_double_to_int(", "")


@given(st.one_of(st.none(), DOUBLES))
def test_cast_of_round_is_round_then_cast(x: float | None) -> None:
    rounded = ROUND.function({"x": x})
    for kind, one_step in ONE_STEP.items():
        expected = TWO_STEPS[kind].function({"r": rounded})
        got = one_step.function({"x": x})
        assert got == expected and type(got) is type(expected), (kind, x, got, expected)


def test_types_and_other_shapes_are_unchanged() -> None:
    assert str(ONE_STEP["BIGINT"].type) == str(TWO_STEPS["BIGINT"].type)
    # Not a DOUBLE, digits, a constant, TRY_CAST: the two steps, as before.
    assert _compiled("CAST(ROUND(x, 1) AS BIGINT)", {"x": DOUBLE}).function({"x": 2.46}) == 2
    assert _compiled("CAST(ROUND(2.5) AS BIGINT)", {}).function({}) == 3
    assert _compiled("TRY_CAST(ROUND(x) AS INT)", {"x": DOUBLE}).function({"x": -2.5}) == -3
