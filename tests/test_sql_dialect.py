"""The Flink SQL dialect: every statement form parses into the shape the planner reads, prints back
as Flink SQL that parses to the same tree, and a mistake is one SqlError line naming where it is."""

from __future__ import annotations

import textwrap

import pytest
from sqlglot import exp

from actorflow.errors import PlanError, SqlError
from actorflow.sql.accessors import (
    PatternTerm,
    error_at,
    from_clause,
    function_definition,
    interval_millis,
    match_pattern,
    position,
    set_option,
    table_hint_options,
    table_name,
    table_options,
    table_schema,
)
from actorflow.sql.dialect import Flink, parse
from actorflow.sql.nodes import (
    Cumulate,
    Descriptor,
    Explain,
    Hop,
    MatchRecognize,
    Reset,
    Session,
    StatementSet,
    TableArgument,
    TableFunction,
    Tumble,
    Watermark,
)

ISSUE_14 = """
CREATE TABLE tx (
  tx_id BIGINT, card_id STRING, merchant_id STRING, amount DOUBLE, ts BIGINT,
  rowtime AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rowtime AS rowtime - INTERVAL '2' SECOND
) WITH ('connector' = 'jsonlines', 'path' = 'transactions.jsonl');

CREATE TABLE spend WITH ('connector' = 'jsonlines', 'path' = 'spend.jsonl') AS
SELECT card_id, window_start, window_end, COUNT(*) AS n, SUM(amount) AS total
FROM TABLE(TUMBLE(TABLE tx, DESCRIPTOR(rowtime), INTERVAL '10' SECOND))
GROUP BY card_id, window_start, window_end;
"""


def one(sql: str) -> exp.Expression:
    statements = parse(sql)
    assert len(statements) == 1
    return statements[0]


def source(sql: str) -> exp.Expression:
    """The FROM source of a single SELECT."""
    clause = from_clause(one(sql))
    assert clause is not None
    return clause.this


def window_function(sql: str) -> exp.Expression:
    table_function = source(sql)
    assert isinstance(table_function, TableFunction)
    return table_function.this


def sql_of(node: exp.Expression | None) -> str:
    assert node is not None
    return node.sql(dialect=Flink)


def assert_round_trip(sql: str) -> None:
    """Printing a statement as Flink SQL and parsing that again gives the same tree."""
    for statement in parse(sql):
        printed = statement.sql(dialect=Flink)
        assert parse(printed) == [statement], printed


# The issue's script -------------------------------------------------------------------------------


def test_the_issue_14_script_parses_into_a_source_table_and_a_windowed_ctas() -> None:
    source_table, sink = parse(ISSUE_14)

    schema = table_schema(source_table)  # type: ignore[arg-type]
    assert schema.name == "tx"
    assert [(c.name, sql_of(c.type)) for c in schema.physical] == [
        ("tx_id", "BIGINT"),
        ("card_id", "STRING"),
        ("merchant_id", "STRING"),
        ("amount", "DOUBLE"),
        ("ts", "BIGINT"),
    ]
    assert [(c.name, sql_of(c.expression)) for c in schema.computed] == [
        ("rowtime", "TO_TIMESTAMP_LTZ(ts, 3)")
    ]
    assert [c.name for c in schema.columns][-1] == "rowtime"  # the declared order, computed included
    assert schema.watermark is not None
    assert schema.watermark[0] == "rowtime"
    assert sql_of(schema.watermark[1]) == "rowtime - INTERVAL '2' SECOND"
    assert schema.options == {"connector": "jsonlines", "path": "transactions.jsonl"}
    assert schema.primary_key == ()
    assert schema.query is None

    ctas = table_schema(sink)  # type: ignore[arg-type]
    assert ctas.name == "spend"
    assert ctas.columns == ()
    assert ctas.options == {"connector": "jsonlines", "path": "spend.jsonl"}
    assert isinstance(ctas.query, exp.Select)
    assert [sql_of(e) for e in ctas.query.args["group"].expressions] == [
        "card_id",
        "window_start",
        "window_end",
    ]
    table_function = from_clause(ctas.query).this  # type: ignore[union-attr]
    assert isinstance(table_function, TableFunction)
    tumble = table_function.this
    assert isinstance(tumble, Tumble)
    assert table_name(tumble.table.this) == "tx"
    assert [c.name for c in tumble.descriptor.expressions] == ["rowtime"]
    assert interval_millis(tumble.args["size"]) == 10_000
    assert tumble.args.get("offset") is None
    assert_round_trip(ISSUE_14)


# CREATE TABLE ---------------------------------------------------------------------------------


def test_create_table_with_every_flink_type_computed_columns_watermark_and_primary_key() -> None:
    create = one(
        """
        CREATE TEMPORARY TABLE IF NOT EXISTS cat.db.orders (
          id BIGINT, name VARCHAR(20), qty INT, price DECIMAL(10, 2), rate DOUBLE,
          ok BOOLEAN, s STRING, t3 TIMESTAMP(3), l3 TIMESTAMP_LTZ(3), ts BIGINT,
          total AS price * qty,
          rowtime AS TO_TIMESTAMP_LTZ(ts, 3),
          WATERMARK FOR rowtime AS rowtime - INTERVAL '5' SECOND,
          PRIMARY KEY (id, name) NOT ENFORCED
        ) WITH ('connector' = 'kafka', 'topic' = 'orders', 'scan.startup.mode' = 'earliest-offset')
        """
    )
    assert isinstance(create, exp.Create)
    assert create.args["kind"] == "TABLE"
    schema_node = create.this
    assert isinstance(schema_node, exp.Schema)
    kinds = [type(e).__name__ for e in schema_node.expressions]
    assert kinds == ["ColumnDef"] * 12 + ["Watermark", "PrimaryKey"]

    schema = table_schema(create)  # type: ignore[arg-type]
    assert schema.name == "cat.db.orders"
    assert schema.temporary and schema.if_not_exists
    types = {c.name: c.type for c in schema.physical}
    assert types["id"].this == exp.DataType.Type.BIGINT  # type: ignore[union-attr]
    assert types["qty"].this == exp.DataType.Type.INT  # type: ignore[union-attr]
    assert types["rate"].this == exp.DataType.Type.DOUBLE  # type: ignore[union-attr]
    assert types["ok"].this == exp.DataType.Type.BOOLEAN  # type: ignore[union-attr]
    assert types["s"].this == exp.DataType.Type.TEXT  # type: ignore[union-attr]
    assert types["l3"].this == exp.DataType.Type.TIMESTAMPLTZ  # type: ignore[union-attr]
    assert types["t3"].this == exp.DataType.Type.TIMESTAMP  # type: ignore[union-attr]
    assert [sql_of(p) for p in types["price"].expressions] == ["10", "2"]  # type: ignore[union-attr]
    assert [sql_of(p) for p in types["name"].expressions] == ["20"]  # type: ignore[union-attr]
    assert [sql_of(p) for p in types["l3"].expressions] == ["3"]  # type: ignore[union-attr]
    assert {name: sql_of(t) for name, t in types.items()} == {
        "id": "BIGINT",
        "name": "VARCHAR(20)",
        "qty": "INT",
        "price": "DECIMAL(10, 2)",
        "rate": "DOUBLE",
        "ok": "BOOLEAN",
        "s": "STRING",
        "t3": "TIMESTAMP(3)",
        "l3": "TIMESTAMP_LTZ(3)",
        "ts": "BIGINT",
    }
    assert [(c.name, sql_of(c.expression)) for c in schema.computed] == [
        ("total", "price * qty"),
        ("rowtime", "TO_TIMESTAMP_LTZ(ts, 3)"),
    ]
    watermark = schema_node.expressions[12]
    assert isinstance(watermark, Watermark)
    assert isinstance(watermark.this, exp.Column) and watermark.this.name == "rowtime"
    assert isinstance(watermark.expression, exp.Sub)
    assert interval_millis(watermark.expression.expression) == 5_000
    assert schema.primary_key == ("id", "name")
    assert schema.options["scan.startup.mode"] == "earliest-offset"
    assert_round_trip(create.sql(dialect=Flink))


def test_an_inline_primary_key_and_metadata_columns() -> None:
    schema = table_schema(
        one(  # type: ignore[arg-type]
            "CREATE TABLE k (id BIGINT PRIMARY KEY NOT ENFORCED, "
            "ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL, `offset` BIGINT METADATA) "
            "WITH ('connector' = 'upsert-kafka')"
        )
    )
    assert schema.primary_key == ("id",)
    ts, offset = schema.columns[1:]
    assert (ts.metadata, ts.virtual, ts.is_physical) == ("timestamp", True, False)
    assert (offset.metadata, offset.virtual) == ("offset", False)
    assert [c.name for c in schema.physical] == ["id"]
    assert_round_trip("CREATE TABLE k (ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL)")


def test_nested_and_binary_types() -> None:
    create = one(
        "CREATE TABLE t (r ROW<a INT, `b c` STRING>, p ROW(x DOUBLE), l ARRAY<ROW<a INT>>, "
        "m MAP<STRING, BIGINT>, b BYTES, v VARBINARY(8), z TIMESTAMP(3) WITH LOCAL TIME ZONE)"
    )
    kinds = {c.name: c.type for c in table_schema(create).columns}  # type: ignore[arg-type]
    row = kinds["r"]
    assert row is not None and row.this == exp.DataType.Type.STRUCT
    assert [(f.name, sql_of(f.args["kind"])) for f in row.expressions] == [("a", "INT"), ("b c", "STRING")]
    assert {name: sql_of(kind) for name, kind in kinds.items()} == {
        "r": "ROW<a INT, `b c` STRING>",
        "p": "ROW<x DOUBLE>",
        "l": "ARRAY<ROW<a INT>>",
        "m": "MAP<STRING, BIGINT>",
        "b": "BYTES",
        "v": "VARBINARY(8)",
        "z": "TIMESTAMP_LTZ(3)",
    }
    # ROW the type does not disturb ROW in a window frame or in MATCH_RECOGNIZE
    assert_round_trip("SELECT SUM(a) OVER (ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t")


def test_table_hints_carry_dynamic_options() -> None:
    text = (
        "INSERT INTO sink /*+ OPTIONS('sink.parallelism' = '2') */ "
        "SELECT a FROM tx /*+ OPTIONS('scan.startup.mode' = 'latest-offset') */ AS t"
    )
    insert = one(text)
    assert table_hint_options(insert.this) == {"sink.parallelism": "2"}
    source_table = from_clause(insert.expression).this  # type: ignore[union-attr]
    assert source_table.alias == "t"
    assert table_hint_options(source_table) == {"scan.startup.mode": "latest-offset"}
    assert table_hint_options(one("SELECT a FROM tx /* a comment */").find(exp.Table)) == {}  # type: ignore[arg-type]
    assert_round_trip(text)
    with pytest.raises(SqlError, match=r"^line 1, column 17: expected table hints"):
        parse("SELECT a FROM t /*+ 1 */")


def test_a_watermark_equal_to_the_rowtime_and_a_strictly_ascending_one() -> None:
    create = one("CREATE TABLE t (rowtime TIMESTAMP(3), WATERMARK FOR rowtime AS rowtime)")
    watermark = table_schema(create).watermark  # type: ignore[arg-type]
    assert watermark is not None and sql_of(watermark[1]) == "rowtime"


def test_create_table_like_another() -> None:
    text = (
        "CREATE TABLE copy (extra INT) WITH ('connector' = 'print') "
        "LIKE db.src (INCLUDING WATERMARKS, EXCLUDING OPTIONS)"
    )
    schema = table_schema(one(text))  # type: ignore[arg-type]
    assert schema.like == "db.src"
    assert schema.like_options == (("INCLUDING", "WATERMARKS"), ("EXCLUDING", "OPTIONS"))
    assert schema.options == {"connector": "print"}
    assert [c.name for c in schema.columns] == ["extra"]
    assert sql_of(one(text)) == text
    assert table_schema(one("CREATE TABLE c LIKE s")).like_options == ()  # type: ignore[arg-type]
    with pytest.raises(SqlError, match=r"^line 1, column 34: expected one of ALL, CONSTRAINTS"):
        parse("CREATE TABLE c LIKE s (EXCLUDING FOO)")


def test_options_must_be_strings() -> None:
    with pytest.raises(SqlError, match=r"^line 1, column \d+: option 'n' must have a 'string' value$"):
        table_options(one("CREATE TABLE t (a INT) WITH ('n' = 1)"))  # type: ignore[arg-type]


def test_identifiers_are_case_sensitive_and_quoted_with_backticks() -> None:
    select = one("SELECT `Weird Name`, CamelCase FROM `my table`")
    assert [e.name for e in select.expressions] == ["Weird Name", "CamelCase"]
    assert table_name(source("SELECT a FROM `my table`")) == "my table"
    assert sql_of(select) == "SELECT `Weird Name`, CamelCase FROM `my table`"
    assert sql_of(one("SELECT 'it''s'")) == "SELECT 'it''s'"


# The other statements -----------------------------------------------------------------------------


def test_create_view_temporary_view_and_insert() -> None:
    view = one("CREATE TEMPORARY VIEW big AS SELECT * FROM tx WHERE amount > 100")
    assert isinstance(view, exp.Create) and view.args["kind"] == "VIEW"
    assert table_name(view.this) == "big"
    assert view.args["properties"].find(exp.TemporaryProperty) is not None
    assert isinstance(view.expression, exp.Select)
    assert one("CREATE VIEW v AS SELECT 1").args.get("properties") is None

    insert = one("INSERT INTO sink SELECT card_id, amount FROM tx")
    assert isinstance(insert, exp.Insert)
    assert table_name(insert.this) == "sink"
    assert isinstance(insert.expression, exp.Select)
    with_columns = one("INSERT INTO sink (a, b) SELECT x, y FROM s")
    assert isinstance(with_columns.this, exp.Schema)
    assert [c.name for c in with_columns.this.expressions] == ["a", "b"]
    assert one("INSERT OVERWRITE sink SELECT * FROM s").args.get("overwrite")
    assert_round_trip("CREATE TEMPORARY VIEW v AS SELECT a FROM t; INSERT INTO t SELECT a FROM s")


def test_create_temporary_function_for_a_python_udf() -> None:
    definition = function_definition(
        one("CREATE TEMPORARY FUNCTION risk AS 'udfs.scoring.risk' LANGUAGE PYTHON")  # type: ignore[arg-type]
    )
    assert definition.name == "risk"
    assert definition.target == "udfs.scoring.risk"
    assert definition.language == "PYTHON"
    assert definition.temporary
    plain = function_definition(one("CREATE FUNCTION f AS 'm.f'"))  # type: ignore[arg-type]
    assert (plain.language, plain.temporary) == (None, False)
    assert_round_trip("CREATE TEMPORARY FUNCTION f AS 'm.f' LANGUAGE PYTHON")
    assert sql_of(one("CREATE TEMPORARY FUNCTION f AS 'm.f' LANGUAGE PYTHON")).endswith(
        "AS 'm.f' LANGUAGE PYTHON"
    )


def test_set_show_describe() -> None:
    setting = one("SET 'execution.runtime-mode' = 'batch'")
    assert isinstance(setting, exp.Set)
    assert set_option(setting) == ("execution.runtime-mode", "batch")
    assert set_option(one("SET")) is None  # type: ignore[arg-type]

    show = one("SHOW TABLES")
    assert isinstance(show, exp.Show) and show.name == "TABLES"
    assert one("SHOW USER FUNCTIONS").name == "USER FUNCTIONS"
    assert one("SHOW VIEWS").name == "VIEWS"
    create = one("SHOW CREATE TABLE tx")
    assert create.name == "CREATE TABLE" and table_name(create.args["target"]) == "tx"
    columns = one("SHOW COLUMNS FROM tx LIKE '%id'")
    assert columns.name == "COLUMNS" and columns.args["like"].name == "%id"

    for text in ("DESCRIBE tx", "DESC tx"):
        describe = one(text)
        assert isinstance(describe, exp.Describe) and table_name(describe.this) == "tx"
    assert_round_trip("SHOW TABLES; SHOW CREATE TABLE t; SHOW COLUMNS FROM t LIKE 'a%'; DESCRIBE t")


@pytest.mark.parametrize(
    "text",
    [
        "EXPLAIN SELECT a FROM t",
        "EXPLAIN PLAN FOR SELECT a FROM t",
        "EXPLAIN INSERT INTO s SELECT a FROM t",
        "EXPLAIN SELECT a FROM t UNION ALL SELECT a FROM s",
        "EXPLAIN CHANGELOG_MODE, ESTIMATED_COST SELECT a FROM t",
    ],
)
def test_explain_wraps_any_query_statement(text: str) -> None:
    explain = one(text)
    assert isinstance(explain, Explain)
    assert isinstance(explain.this, exp.Query | exp.Insert)
    assert_round_trip(text)


def test_reset_one_key_or_all() -> None:
    reset = one("RESET 'execution.runtime-mode'")
    assert isinstance(reset, Reset) and reset.this.name == "execution.runtime-mode"
    everything = one("RESET")
    assert isinstance(everything, Reset) and everything.this is None
    assert_round_trip("RESET 'k'; RESET")


def test_explain_details_are_kept() -> None:
    explain = one("EXPLAIN CHANGELOG_MODE, ESTIMATED_COST SELECT 1")
    assert [d.name for d in explain.expressions] == ["CHANGELOG_MODE", "ESTIMATED_COST"]


@pytest.mark.parametrize(
    "script",
    [
        "EXECUTE STATEMENT SET BEGIN INSERT INTO a SELECT x FROM t; INSERT INTO b SELECT y FROM t; END;",
        "BEGIN STATEMENT SET;\nINSERT INTO a SELECT x FROM t;\nINSERT INTO b SELECT y FROM t;\nEND;",
    ],
)
def test_a_statement_set_groups_its_inserts(script: str) -> None:
    before, statement_set, after = parse(f"SET 'k' = 'v';\n{script}\nSELECT 1")
    assert isinstance(before, exp.Set) and isinstance(after, exp.Select)
    assert isinstance(statement_set, StatementSet)
    assert [table_name(i.this) for i in statement_set.expressions] == ["a", "b"]
    assert_round_trip(script)
    assert one("EXECUTE INSERT INTO a SELECT 1") == one("INSERT INTO a SELECT 1")


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("BEGIN STATEMENT SET;\nINSERT INTO a SELECT 1;", "line 1, column 1: STATEMENT SET without END"),
        ("SELECT 1;\n END;", "line 2, column 2: END without BEGIN STATEMENT SET"),
        ("BEGIN STATEMENT SET; END;", "line 1, column 1: an empty STATEMENT SET"),
        ("BEGIN;", "line 1, column 1: expected STATEMENT SET after BEGIN (transactions are not Flink's)"),
        (
            "BEGIN STATEMENT SET;\n  INSERT INTO a SELECT 1;\n  BEGIN STATEMENT SET; END;",
            "line 3, column 3: a STATEMENT SET inside another one",
        ),
    ],
)
def test_statement_set_mistakes(script: str, message: str) -> None:
    with pytest.raises(SqlError) as raised:
        parse(script)
    assert str(raised.value) == message


def test_a_script_skips_empty_statements_and_comments() -> None:
    statements = parse("-- a comment\n;;\nSHOW TABLES;\n/* another */ SELECT 1;\n")
    assert [type(s).__name__ for s in statements] == ["Show", "Select"]
    assert parse("") == []


# Queries --------------------------------------------------------------------------------------


def test_projection_filter_case_cast_coalesce_and_functions() -> None:
    select = one(
        """
        SELECT card_id,
               CASE WHEN amount > 100 THEN 'big' ELSE 'small' END AS size,
               CAST(amount AS DECIMAL(10, 2)) AS exact,
               COALESCE(merchant_id, 'unknown') AS merchant,
               UPPER(card_id) || '-' || SUBSTRING(merchant_id, 1, 3) AS label,
               DATE_FORMAT(rowtime, 'yyyy-MM-dd') AS day,
               TIMESTAMPDIFF(SECOND, rowtime, CURRENT_TIMESTAMP) AS age
        FROM tx
        WHERE amount > 10 AND card_id LIKE 'c%' AND merchant_id IS NOT NULL
        """
    )
    assert isinstance(select, exp.Select)
    assert select.named_selects == ["card_id", "size", "exact", "merchant", "label", "day", "age"]
    assert isinstance(select.expressions[1].this, exp.Case)
    cast = select.expressions[2].this
    assert isinstance(cast, exp.Cast) and sql_of(cast.to) == "DECIMAL(10, 2)"
    assert isinstance(select.expressions[3].this, exp.Coalesce)
    assert isinstance(select.args["where"].this, exp.And)
    assert_round_trip(select.sql(dialect=Flink))


@pytest.mark.parametrize("join", ["", "LEFT JOIN", "CROSS JOIN"])
def test_a_lateral_table_function_join(join: str) -> None:
    text = f"SELECT a, w FROM t{',' if not join else ' ' + join} LATERAL TABLE(split(a, ',')) AS T(w)"
    text += " ON TRUE" if join == "LEFT JOIN" else ""
    (joined,) = one(text).args["joins"]
    lateral = joined.this
    assert isinstance(lateral, exp.Lateral)
    assert isinstance(lateral.this, TableFunction)
    call = lateral.this.this
    assert isinstance(call, exp.Anonymous) and call.name == "split"  # a user's function, not sqlglot's
    assert (lateral.alias, [c.name for c in lateral.args["alias"].columns]) == ("T", ["w"])
    assert_round_trip(text)


def test_printed_sql_is_flinks() -> None:
    select = one(
        "SELECT ARRAY[1, 2], DAYOFWEEK(ts), CURRENT_TIMESTAMP, CURRENT_DATE, POSITION('a' IN s), "
        "TRIM(BOTH ' ' FROM s), MOD(a, 2), CAST(s AS STRING) FROM t"
    )
    assert sql_of(select) == (
        "SELECT ARRAY[1, 2], DAYOFWEEK(ts), CURRENT_TIMESTAMP, CURRENT_DATE, POSITION('a' IN s), "
        "TRIM(BOTH ' ' FROM s), MOD(a, 2), CAST(s AS STRING) FROM t"
    )


def test_group_by_having_distinct_and_union_all() -> None:
    select = one(
        "SELECT card_id, COUNT(DISTINCT merchant_id) AS n FROM tx GROUP BY card_id HAVING COUNT(*) > 2"
    )
    assert [sql_of(e) for e in select.args["group"].expressions] == ["card_id"]
    assert sql_of(select.args["having"].this) == "COUNT(*) > 2"
    assert isinstance(select.expressions[1].this.this, exp.Distinct)

    assert one("SELECT DISTINCT card_id FROM tx").args.get("distinct") is not None

    union = one("SELECT a FROM t UNION ALL SELECT a FROM s")
    assert isinstance(union, exp.Union) and not union.args.get("distinct")
    assert_round_trip("SELECT DISTINCT a FROM t UNION ALL SELECT a FROM s")


@pytest.mark.parametrize(
    ("text", "join_kind"),
    [
        (
            "SELECT * FROM Orders o, Shipments s WHERE o.id = s.order_id "
            "AND o.order_time BETWEEN s.ship_time - INTERVAL '4' HOUR AND s.ship_time",
            None,
        ),
        (
            "SELECT * FROM a LEFT JOIN b ON a.id = b.id "
            "AND a.rowtime BETWEEN b.rowtime - INTERVAL '5' MINUTE AND b.rowtime",
            "LEFT",
        ),
    ],
)
def test_interval_joins(text: str, join_kind: str | None) -> None:
    select = one(text)
    (join,) = select.args["joins"]
    assert join.side == (join_kind or "")
    between = select.find(exp.Between)
    assert between is not None
    assert isinstance(between.args["low"], exp.Sub)
    assert isinstance(between.args["low"].expression, exp.Interval)
    assert sql_of(between.args["high"]) in ("s.ship_time", "b.rowtime")
    assert_round_trip(text)


def test_a_temporal_lookup_join() -> None:
    text = (
        "SELECT o.order_id, c.country FROM Orders AS o "
        "JOIN Customers FOR SYSTEM_TIME AS OF o.proc_time AS c ON o.customer_id = c.id"
    )
    (join,) = one(text).args["joins"]
    version = join.this.args["version"]
    assert isinstance(version, exp.Version)
    assert sql_of(version.expression) == "o.proc_time"
    assert_round_trip(text)


def test_over_windows_with_rows_and_range_frames() -> None:
    rows = one(
        "SELECT a, SUM(x) OVER (PARTITION BY a ORDER BY rowtime "
        "ROWS BETWEEN 5 PRECEDING AND CURRENT ROW) AS s FROM t"
    )
    window = rows.expressions[1].this
    assert isinstance(window, exp.Window)
    assert isinstance(window.this, exp.Sum)
    assert [sql_of(p) for p in window.args["partition_by"]] == ["a"]
    assert sql_of(window.args["order"].expressions[0].this) == "rowtime"
    spec = window.args["spec"]
    assert spec.args["kind"] == "ROWS"
    assert (sql_of(spec.args["start"]), spec.args["start_side"]) == ("5", "PRECEDING")
    assert spec.args["end"] == "CURRENT ROW"

    ranged = one(
        "SELECT SUM(amount) OVER (PARTITION BY product ORDER BY order_time "
        "RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW) AS one_hour FROM Orders"
    )
    spec = ranged.find(exp.WindowSpec)
    assert spec is not None and spec.args["kind"] == "RANGE"
    assert interval_millis(spec.args["start"]) == 3_600_000
    assert spec.args["start_side"] == "PRECEDING"

    named = one(
        "SELECT SUM(amount) OVER w AS s, AVG(amount) OVER w AS a FROM Orders "
        "WINDOW w AS (PARTITION BY product ORDER BY order_time ROWS BETWEEN 5 PRECEDING AND CURRENT ROW)"
    )
    assert [w.name for w in named.args["windows"]] == ["w"]
    assert_round_trip(
        rows.sql(dialect=Flink) + ";" + ranged.sql(dialect=Flink) + ";" + named.sql(dialect=Flink)
    )


def test_top_n_and_deduplication_with_row_number() -> None:
    top_n = one(
        """
        SELECT * FROM (
          SELECT *, ROW_NUMBER() OVER (PARTITION BY category ORDER BY sales DESC) AS rn
          FROM ShopSales)
        WHERE rn <= 3
        """
    )
    inner = from_clause(top_n).this  # type: ignore[union-attr]
    assert isinstance(inner, exp.Subquery)
    row_number = inner.this.expressions[1].this
    assert isinstance(row_number, exp.Window) and isinstance(row_number.this, exp.RowNumber)
    ordered = row_number.args["order"].expressions[0]
    assert ordered.args.get("desc")
    condition = top_n.args["where"].this
    assert isinstance(condition, exp.LTE) and sql_of(condition) == "rn <= 3"

    dedup = one(
        """
        SELECT order_id, user, product, num FROM (
          SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY proctime ASC) AS row_num
          FROM Orders)
        WHERE row_num = 1
        """
    )
    assert dedup.named_selects == ["order_id", "user", "product", "num"]
    assert isinstance(dedup.args["where"].this, exp.EQ)
    assert_round_trip(top_n.sql(dialect=Flink) + ";" + dedup.sql(dialect=Flink))


# Windowing table-valued functions -------------------------------------------------------------


def test_tumble_positional_and_named_arguments_give_the_same_tree() -> None:
    positional = window_function(
        "SELECT * FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))"
    )
    named = window_function(
        """
        SELECT * FROM TABLE(
           TUMBLE(
             DATA => TABLE Bid,
             TIMECOL => DESCRIPTOR(bidtime),
             SIZE => INTERVAL '10' MINUTES))
        """
    )
    reordered = window_function(
        "SELECT * FROM TABLE(TUMBLE(SIZE => INTERVAL '10' MINUTES, "
        "TIMECOL => DESCRIPTOR(bidtime), DATA => TABLE Bid))"
    )
    assert isinstance(positional, Tumble)
    assert positional == named == reordered
    assert isinstance(positional.this, TableArgument) and table_name(positional.this.this) == "Bid"
    assert isinstance(positional.args["timecol"], Descriptor)
    assert interval_millis(positional.args["size"]) == 600_000


def test_tumble_with_an_offset_and_an_alias() -> None:
    table_function = source(
        "SELECT * FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES, "
        "INTERVAL '1' MINUTES)) AS w"
    )
    assert isinstance(table_function, TableFunction) and table_function.alias == "w"
    assert interval_millis(table_function.this.args["offset"]) == 60_000


def test_hop_keeps_slide_and_size_apart() -> None:
    for text in (
        "SELECT * FROM TABLE(HOP(TABLE Bid, DESCRIPTOR(bidtime), "
        "INTERVAL '5' MINUTES, INTERVAL '10' MINUTES))",
        "SELECT * FROM TABLE(HOP(DATA => TABLE Bid, TIMECOL => DESCRIPTOR(bidtime), "
        "SLIDE => INTERVAL '5' MINUTES, SIZE => INTERVAL '10' MINUTES))",
    ):
        hop = window_function(text)
        assert isinstance(hop, Hop)
        assert interval_millis(hop.args["slide"]) == 300_000
        assert interval_millis(hop.args["size"]) == 600_000
        assert_round_trip(text)


def test_cumulate_keeps_step_and_size_apart() -> None:
    cumulate = window_function(
        "SELECT * FROM TABLE(CUMULATE(TABLE Bid, DESCRIPTOR(bidtime), "
        "INTERVAL '2' MINUTES, INTERVAL '10' MINUTES))"
    )
    assert isinstance(cumulate, Cumulate)
    assert interval_millis(cumulate.args["step"]) == 120_000
    assert interval_millis(cumulate.args["size"]) == 600_000


@pytest.mark.parametrize(
    ("data", "keys"),
    [
        ("TABLE Bid", []),
        ("TABLE Bid PARTITION BY item", ["item"]),
        ("TABLE Bid PARTITION BY (item, k)", ["item", "k"]),
    ],
)
def test_session_with_and_without_partition_keys(data: str, keys: list[str]) -> None:
    text = f"SELECT * FROM TABLE(SESSION({data}, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))"
    session = window_function(text)
    assert isinstance(session, Session)
    assert [sql_of(k) for k in session.table.args.get("partition_by") or []] == keys
    assert interval_millis(session.args["gap"]) == 300_000
    assert_round_trip(text)


def test_window_aggregation_with_grouping_sets_from_flinks_documentation() -> None:
    select = one(
        """
        SELECT window_start, window_end, supplier_id, SUM(price) AS total_price
          FROM TABLE(
            TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
          GROUP BY window_start, window_end, GROUPING SETS ((supplier_id), ())
        """
    )
    assert isinstance(from_clause(select).this, TableFunction)  # type: ignore[union-attr]
    group = select.args["group"]
    # sqlglot 25 keeps the sets in group.args["grouping_sets"], newer versions in a GroupingSets node
    assert group.args.get("grouping_sets") or group.find(getattr(exp, "GroupingSets", exp.Tuple))


def test_window_top_n_from_flinks_documentation() -> None:
    text = """
        SELECT *
          FROM (
            SELECT *,
              ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) as rownum
            FROM (
              SELECT window_start, window_end, supplier_id, SUM(price) AS price, COUNT(*) AS cnt
              FROM TABLE(
                TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
              GROUP BY window_start, window_end, supplier_id
            )
          ) WHERE rownum <= 3
        """
    assert len(list(one(text).find_all(Tumble))) == 1
    assert_round_trip(text)


def test_window_join_from_flinks_documentation() -> None:
    text = """
        SELECT L.num as L_Num, L.id as L_Id, R.num as R_Num, R.id as R_Id,
               COALESCE(L.window_start, R.window_start) as window_start,
               COALESCE(L.window_end, R.window_end) as window_end
        FROM (
            SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
        ) L
        FULL JOIN (
            SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
        ) R
        ON L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end
        """
    select = one(text)
    (join,) = select.args["joins"]
    assert join.side == "FULL"
    assert [table_name(t.table.this) for t in select.find_all(Tumble)] == ["LeftTable", "RightTable"]
    assert_round_trip(text)


def test_the_legacy_group_window_function_stays_a_plain_call() -> None:
    select = one(
        "SELECT TUMBLE_START(rowtime, INTERVAL '1' HOUR), COUNT(*) FROM t "
        "GROUP BY TUMBLE(rowtime, INTERVAL '1' HOUR), SESSION(rowtime, INTERVAL '5' MINUTE)"
    )
    tumble, session = select.args["group"].expressions
    assert isinstance(tumble, exp.Anonymous) and tumble.name.upper() == "TUMBLE"
    assert isinstance(session, exp.Anonymous) and session.name.upper() == "SESSION"


def test_any_other_table_function_keeps_table_and_named_arguments() -> None:
    table_function = source("SELECT * FROM TABLE(my_ptf(TABLE t PARTITION BY k, n => 3)) AS x")
    assert isinstance(table_function, TableFunction)
    call = table_function.this
    assert isinstance(call, exp.Anonymous) and call.name == "my_ptf"
    argument, named = call.expressions
    assert isinstance(argument, TableArgument)
    assert isinstance(named, exp.Kwarg) and named.this.name == "n"


# MATCH_RECOGNIZE ------------------------------------------------------------------------------


def test_match_recognize_with_within() -> None:
    text = """
        SELECT *
        FROM Ticker
            MATCH_RECOGNIZE(
                PARTITION BY symbol
                ORDER BY rowtime
                MEASURES
                    C.rowtime AS dropTime,
                    A.price - C.price AS dropDiff
                ONE ROW PER MATCH
                AFTER MATCH SKIP PAST LAST ROW
                PATTERN (A B*? C{2,} D?) WITHIN INTERVAL '1' HOUR
                DEFINE
                    B AS B.price > A.price - 10,
                    C AS C.price < A.price - 10
            ) AS T
        """
    select = one(text)
    match = select.args["match"]
    assert isinstance(match, MatchRecognize)
    assert table_name(from_clause(select).this) == "Ticker"  # type: ignore[union-attr]
    assert [sql_of(p) for p in match.args["partition_by"]] == ["symbol"]
    assert sql_of(match.args["order"].expressions[0].this) == "rowtime"
    assert [m.this.alias for m in match.args["measures"]] == ["dropTime", "dropDiff"]
    assert match.args["rows"].name == "ONE ROW PER MATCH"
    assert match.args["after"].name == "AFTER MATCH SKIP PAST LAST ROW"
    assert match.args["pattern"].name == "A B*? C{2,} D?"
    assert interval_millis(match.args["within"]) == 3_600_000
    assert [(d.alias, sql_of(d.this)) for d in match.args["define"]] == [
        ("B", "B.price > A.price - 10"),
        ("C", "C.price < A.price - 10"),
    ]
    assert match.alias == "T"
    assert_round_trip(text)


def test_match_recognize_from_flinks_documentation() -> None:
    text = """
        SELECT *
        FROM Ticker
            MATCH_RECOGNIZE (
                PARTITION BY symbol
                ORDER BY rowtime
                MEASURES
                    START_ROW.rowtime AS start_tstamp,
                    LAST(PRICE_DOWN.rowtime) AS bottom_tstamp,
                    LAST(PRICE_UP.rowtime) AS end_tstamp
                ONE ROW PER MATCH
                AFTER MATCH SKIP TO LAST PRICE_UP
                PATTERN (START_ROW PRICE_DOWN+ PRICE_UP)
                DEFINE
                    PRICE_DOWN AS
                        (LAST(PRICE_DOWN.price, 1) IS NULL AND PRICE_DOWN.price < START_ROW.price) OR
                            PRICE_DOWN.price < LAST(PRICE_DOWN.price, 1),
                    PRICE_UP AS
                        PRICE_UP.price > LAST(PRICE_DOWN.price, 1)
            ) MR
        """
    match = one(text).args["match"]
    assert match.args.get("within") is None
    assert match.args["after"].name == "AFTER MATCH SKIP TO LAST PRICE_UP"
    assert match.args["pattern"].name == "START_ROW PRICE_DOWN+ PRICE_UP"
    last = match.args["define"][1].this.expression
    assert isinstance(last, exp.Anonymous) and last.name == "LAST" and len(last.expressions) == 2
    assert_round_trip(text)


def pattern_of(pattern: str) -> exp.MatchRecognize:
    match = one(f"SELECT * FROM t MATCH_RECOGNIZE (PATTERN ({pattern}) DEFINE A AS true)").args["match"]
    assert isinstance(match, MatchRecognize)
    return match


def test_match_pattern_reads_variables_groups_and_quantifiers() -> None:
    a, b, group, e = match_pattern(pattern_of("A B*? (C D{2,3}){2,} E?"))
    assert a == PatternTerm("A")
    assert b == PatternTerm("B", min=0, max=None, greedy=False)
    assert (group.variable, group.min, group.max) == (None, 2, None)
    assert group.group == (PatternTerm("C"), PatternTerm("D", min=2, max=3))
    assert e == PatternTerm("E", min=0, max=1)
    assert match_pattern(pattern_of("A{,2}? B{3} C+")) == (
        PatternTerm("A", min=0, max=2, greedy=False),
        PatternTerm("B", min=3, max=3),
        PatternTerm("C", min=1, max=None),
    )


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (
            "A | B",
            "line 1, column 45: an alternation '|', which Flink does not support, in PATTERN (A | B)",
        ),
        (
            "PERMUTE(A, B)",
            "line 1, column 43: PERMUTE, which Flink does not support, in PATTERN (PERMUTE(A, B))",
        ),
        ("A ()", "line 1, column 45: an empty group in PATTERN (A ())"),
        (
            "A\n  B{3,1}",
            "line 2, column 4: a quantifier {3,1} whose maximum is below its minimum in PATTERN (A B{3,1})",
        ),
        ("A{}", "line 1, column 44: an empty quantifier {} in PATTERN (A{})"),
    ],
)
def test_match_pattern_refuses_what_flink_does_not_have(pattern: str, message: str) -> None:
    with pytest.raises(SqlError) as raised:
        match_pattern(pattern_of(pattern))
    assert str(raised.value) == message


# Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # an unclosed parenthesis: the CREATE TABLE of issue 14 without its ')'
        (
            ISSUE_14.split(";")[0].replace("\n) WITH", "\n WITH"),
            "line 6, column 2: expected ')' near 'WITH'",
        ),
        ("SELECT a FROM t WHERE (a > 1", "line 1, column 28: expected ')' near '1'"),
        ("SELECT COUNT(* FROM t", "line 1, column 16: expected ')' near 'FROM'"),
        # unknown statements
        ("SELEC a FROM t", "line 1, column 1: unknown statement 'SELEC'"),
        ("SELECT 1;\n\n  FOO BAR", "line 3, column 3: unknown statement 'FOO'"),
        ("1 + 1", "line 1, column 1: unknown statement '1'"),
        ("ALTER TABLE t RENAME TO s", "line 1, column 1: unknown statement 'ALTER'"),
        ("SHOW TABLEZ", "line 1, column 6: unknown SHOW 'TABLEZ'"),
        # misspelled keywords
        ("CREATE TABEL t (a INT)", "line 1, column 8: unexpected 'TABEL' in CREATE statement"),
        ("SELECT a\nFROM t\nWHER a > 1", "line 3, column 6: unexpected 'a'"),
        ("SELECT a FROM t GROUP a", "line 1, column 23: unexpected 'a'"),
        (
            "CREATE TABLE t (a INT, WATERMARK rowtime AS a)",
            "line 1, column 34: expected FOR after WATERMARK",
        ),
        # unterminated literals
        ("SELECT a FROM t\nWHERE s = 'abc", "line 2, column 11: unterminated string"),
        ("SELECT `a FROM t", "line 1, column 8: unterminated identifier"),
        ("SELECT 1 /* no end", "line 1, column 10: unterminated comment"),
        # window table functions and statements with a wrong content
        (
            "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(c)))",
            "line 1, column 50: TUMBLE needs its SIZE argument",
        ),
        (
            "SELECT * FROM TABLE(TUMBLE(DATA => TABLE t, TIMECOL => DESCRIPTOR(c),\n"
            "  SIZ => INTERVAL '1' SECOND))",
            "line 2, column 3: TUMBLE has no parameter SIZ (it has DATA, TIMECOL, SIZE, OFFSET)",
        ),
        (
            "SELECT * FROM TABLE(HOP(TABLE t, c, INTERVAL '1' SECOND, INTERVAL '2' SECOND))",
            "line 1, column 34: HOP: TIMECOL must be DESCRIPTOR(column)",
        ),
        (
            "SELECT * FROM TABLE(TUMBLE(DATA => TABLE t, DESCRIPTOR(c), INTERVAL '1' SECOND))",
            "line 1, column 45: TUMBLE: a positional argument after a named one",
        ),
        (
            "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(c), SIZE => INTERVAL '1' SECOND,\n"
            "  SIZE => INTERVAL '2' SECOND))",
            "line 2, column 3: TUMBLE: SIZE is given twice",
        ),
        (
            "SELECT * FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(c), INTERVAL '1' SECOND,))",
            "line 1, column 74: expected an argument of CUMULATE",
        ),
        (
            "SELECT * FROM TABLE(TUMBLE(t, 1))",
            "line 1, column 21: TUMBLE needs a table argument, TABLE name",
        ),
        (
            "SELECT * FROM TABLE(TUMBLE(TABLE, DESCRIPTOR(c), INTERVAL '1' SECOND))",
            "line 1, column 33: expected table name near ','",
        ),
        (
            "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(), INTERVAL '1' SECOND))",
            "line 1, column 48: expected column names in DESCRIPTOR(...)",
        ),
        ("SELECT * FROM TABLE(t)", "line 1, column 21: expected a table function call in TABLE(...)"),
        (
            "CREATE TABLE t (a INT, WATERMARK FOR a AS)",
            "line 1, column 42: expected the watermark's expression after AS",
        ),
        ("EXPLAIN", "line 1, column 1: EXPLAIN takes a query or an INSERT statement"),
        (
            "EXPLAIN CREATE TABLE t (a INT)",
            "line 1, column 9: EXPLAIN takes a query or an INSERT statement",
        ),
        (
            "SELECT * FROM t MATCH_RECOGNIZE (PATTERN (A) WITHIN 5 DEFINE A AS true)",
            "line 1, column 53: expected an interval after WITHIN",
        ),
    ],
)
def test_a_mistake_is_one_sql_error_line_naming_line_and_column(text: str, message: str) -> None:
    with pytest.raises(SqlError) as raised:
        parse(text)
    assert str(raised.value) == message
    assert "\n" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no sqlglot chain
    assert isinstance(raised.value, PlanError)


def test_sql_error_is_exported_from_actorflow() -> None:
    import actorflow

    assert actorflow.SqlError is SqlError


# Accessors ------------------------------------------------------------------------------------


def test_positions_and_errors_at_a_node() -> None:
    select = one(
        textwrap.dedent("""\
        SELECT a,
               price * 2
        FROM t""")
    )
    assert position(select.expressions[1]) == (2, 8)
    assert str(error_at(select.expressions[1], "unknown column 'price'")) == (
        "line 2, column 8: unknown column 'price'"
    )
    assert str(error_at(exp.Literal.number(1), "no position")) == "no position"


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("INTERVAL '10' SECOND", 10_000),
        ("INTERVAL '10' SECONDS", 10_000),
        ("INTERVAL '1.5' SECOND", 1_500),
        ("INTERVAL '250' MILLISECOND", 250),
        ("INTERVAL '5' MINUTE", 300_000),
        ("INTERVAL '2' HOURS", 7_200_000),
        ("INTERVAL '1' DAY", 86_400_000),
        ("INTERVAL '10 SECOND'", 10_000),
        ("INTERVAL '10' SECOND(3)", 10_000),
        ("INTERVAL '-5' MINUTE", -300_000),
        ("-INTERVAL '5' MINUTE", -300_000),
        ("INTERVAL '1:30' HOUR TO MINUTE", 5_400_000),
        ("INTERVAL '2:30' MINUTE TO SECOND", 150_000),
        ("INTERVAL '1 02:03:04.005' DAY TO SECOND", 93_784_005),
    ],
)
def test_interval_millis(text: str, millis: int) -> None:
    assert interval_millis(one(f"SELECT {text}").expressions[0]) == millis


def test_interval_millis_refuses_months_and_non_intervals() -> None:
    with pytest.raises(SqlError, match=r"^line 1, column 17: unsupported interval unit"):
        interval_millis(one("SELECT INTERVAL '1' MONTH").expressions[0])
    with pytest.raises(SqlError, match=r"^line 1, column 8: expected an interval"):
        interval_millis(one("SELECT 5").expressions[0])
    with pytest.raises(SqlError, match=r"^line 1, column 17: expected 2 fields"):
        interval_millis(one("SELECT INTERVAL '1:2:3' HOUR TO MINUTE").expressions[0])
    with pytest.raises(SqlError, match=r"^line 1, column 17: unsupported interval unit"):
        interval_millis(one("SELECT INTERVAL '1:30' MINUTE TO HOUR").expressions[0])


def test_accessors_refuse_the_wrong_statement() -> None:
    with pytest.raises(SqlError, match="expected a CREATE TABLE statement"):
        table_schema(one("CREATE VIEW v AS SELECT 1"))  # type: ignore[arg-type]
    with pytest.raises(SqlError, match="expected a CREATE FUNCTION statement"):
        function_definition(one("CREATE VIEW v AS SELECT 1"))  # type: ignore[arg-type]
    with pytest.raises(SqlError, match="a table has one WATERMARK"):
        table_schema(
            one(  # type: ignore[arg-type]
                "CREATE TABLE t (a TIMESTAMP(3), WATERMARK FOR a AS a, WATERMARK FOR a AS a)"
            )
        )


def test_the_dialect_works_through_sqlglot_by_name() -> None:
    import sqlglot

    tree = sqlglot.parse_one(
        "SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(c), INTERVAL '1' SECOND))", read="flink"
    )
    assert isinstance(tree.find(Tumble), Tumble)
    assert sqlglot.transpile("SELECT CAST(a AS TEXT)", write=Flink) == ["SELECT CAST(a AS STRING)"]
