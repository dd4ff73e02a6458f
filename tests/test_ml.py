"""``learn_predict`` (actorflow.ml): the predictions a plain loop over river gives, per key and for
the whole stream, through savepoints and rescales, on the heap and in RocksDB; bad records, models
it cannot run and a missing river, each a one-line error."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from river import anomaly, cluster, linear_model, preprocessing

from actorflow import Flow, OutputTag, PlanError, WatermarkStrategy
from actorflow.ml import Scored
from actorflow.operators.failures import FailedRecord
from tests.faults import StoppingSource

N = 900
KEYS = 5
FEATURES = ["a", "b"]
LIMITS = {"a": (-4.0, 4.0), "b": (-4.0, 4.0)}


def records(count: int = N) -> list[dict[str, Any]]:
    """Seeded points of KEYS keys: ``y`` is linear in ``a`` and ``b`` (with a slope per key), and
    one record in 50 lies far out."""
    rng = random.Random(3)
    out = []
    for n in range(count):
        key = f"k{rng.randrange(KEYS)}"
        a, b = rng.gauss(0, 1), rng.gauss(0, 1)
        if n % 50 == 49:
            a, b = 3.5, -3.5
        slope = 1 + int(key[1:])
        out.append({"id": n, "key": key, "a": a, "b": b, "y": slope * a - 2 * b, "ts": n})
    return out


def regressor() -> Any:
    return preprocessing.StandardScaler() | linear_model.LinearRegression()


def detector() -> Any:
    return anomaly.HalfSpaceTrees(n_trees=5, height=6, window_size=40, limits=LIMITS, seed=11)


def clusterer() -> Any:
    return cluster.KMeans(n_clusters=3, seed=5)


def reference(
    make: Callable[[], Any], kind: str, items: list[dict[str, Any]], key: Callable[[Any], Any]
) -> dict[int, Any]:
    """River alone: a model per key, each record predicted, then learnt (progressive validation)."""
    models: dict[Any, Any] = {}
    predictions = {}
    for record in items:
        if key(record) not in models:
            models[key(record)] = make()
        model = models[key(record)]
        x = {name: record[name] for name in FEATURES}
        if kind == "anomaly":
            predictions[record["id"]] = model.score_one(x)
            model.learn_one(x)
        elif kind == "supervised":
            predictions[record["id"]] = model.predict_one(x)
            model.learn_one(x, record["y"])
        else:
            predictions[record["id"]] = model.predict_one(x)
            model.learn_one(x)
    return predictions


def by_id(scored: list[Scored[dict[str, Any]]]) -> dict[int, Any]:
    assert all(isinstance(s, Scored) for s in scored)
    return {s.value["id"]: s.prediction for s in scored}


CASES = [
    pytest.param(regressor, "supervised", "y", id="regression"),
    pytest.param(detector, "anomaly", None, id="anomaly"),
    pytest.param(clusterer, "unsupervised", None, id="clustering"),
]


@pytest.mark.parametrize(("make", "kind", "target"), CASES)
def test_per_key_predictions_are_a_plain_river_loops(
    make: Callable[[], Any], kind: str, target: str | None, parallelism: int
) -> None:
    items = records()
    flow = Flow("ml", parallelism=parallelism)
    out = (
        flow.from_iterable(items)
        .key_by("key")
        .learn_predict(make, features=FEATURES, target=target)
        .collect()
    )
    flow.execute()
    assert [s.value for s in sorted(out.values, key=lambda s: s.value["id"])] == items  # untouched
    expected = reference(make, kind, items, key=lambda r: r["key"])
    assert by_id(out.values) == expected
    assert len(set(map(str, expected.values()))) > 2, "the models learnt: predictions vary"


@pytest.mark.parametrize(("make", "kind", "target"), CASES)
def test_a_global_model_sees_the_whole_stream_in_order(
    make: Callable[[], Any], kind: str, target: str | None, parallelism: int
) -> None:
    items = records()
    flow = Flow("ml", parallelism=parallelism)
    out = flow.from_iterable(items).learn_predict(make, features=FEATURES, target=target).collect()
    flow.execute()
    assert by_id(out.values) == reference(make, kind, items, key=lambda r: None)
    # One model for all: not what a model per key would have said.
    assert by_id(out.values) != reference(make, kind, items, key=lambda r: r["key"])


def test_features_may_be_a_function_of_the_record_and_records_objects() -> None:
    items = records(200)
    flow = Flow("ml")
    out = (
        flow.from_iterable([(r["id"], r["key"], r["a"], r["b"]) for r in items])
        .key_by(lambda t: t[1])
        .learn_predict(detector, features=lambda t: {"a": t[2], "b": t[3]})
        .map(lambda s: (s.value[0], s.prediction))
        .collect()
    )
    flow.execute()
    assert dict(out.values) == reference(detector, "anomaly", items, key=lambda r: r["key"])


# -- savepoints, restores and rescales ------------------------------------------------------------


def build(
    parallelism: int, checkpoints: Path, target: Path, stop_at: int | None, backend: str | None
) -> tuple[Flow, StoppingSource]:
    """A model per key and one for the whole stream, into an exactly-once file."""
    flow = Flow("ml-restore", parallelism=parallelism, batch_size=25)
    if backend is not None:
        flow.set_state_backend(backend, cache_entries=2)  # fewer entries than keys: models evicted
    flow.enable_checkpointing(checkpoints)
    source = StoppingSource(records(), flow, stop_at)
    stream = flow.from_source(source, watermarks=WatermarkStrategy.punctuated("ts", lag_ms=0))
    keyed = stream.key_by("key").learn_predict(regressor, features=FEATURES, target="y")
    whole = stream.learn_predict(detector, features=FEATURES, name="whole")
    tagged = keyed.map(lambda s: ["key", s.value["id"], s.prediction])
    tagged.union(whole.map(lambda s: ["all", s.value["id"], s.prediction])).sink_to_json_lines(
        target, exactly_once=True
    )
    return flow, source


def lines(target: Path) -> list[list[Any]]:
    return sorted(orjson.loads(line) for line in target.read_bytes().splitlines())


BACKENDS = [pytest.param(None, id="default"), pytest.param("rocksdb", id="rocksdb")]


def resumed(tmp_path: Path, runs: list[tuple[int, int | None]], backend: str | None) -> None:
    """Run the flow once whole, then as ``runs`` (parallelism, stop after): the same lines."""
    whole = tmp_path / "whole.jsonl"
    build(2, tmp_path / "whole-checkpoints", whole, None, backend)[0].execute()
    target = tmp_path / "out.jsonl"
    resumed_at = 0
    for parallelism, stop_at in runs:
        flow, source = build(parallelism, tmp_path / "checkpoints", target, stop_at, backend)
        flow.execute()
        assert source.stopped == (stop_at is not None)
        assert source._skip >= resumed_at, "the run resumed from the previous run's savepoint"
        resumed_at = stop_at or 0
    assert len(lines(whole)) == 2 * N
    assert lines(target) == lines(whole)


@pytest.mark.parametrize("backend", BACKENDS)
def test_models_stopped_with_a_savepoint_resume_with_the_same_predictions(
    tmp_path: Path, backend: str | None
) -> None:
    resumed(tmp_path, [(2, N // 2), (2, None)], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_models_move_with_their_keys_when_a_savepoint_restores_at_another_parallelism(
    tmp_path: Path, backend: str | None
) -> None:
    resumed(tmp_path, [(1, N // 3), (3, 2 * N // 3), (2, None)], backend)


# -- bad records -------------------------------------------------------------------------------


def run_keyed(items: list[Any], **settings: Any) -> list[Any]:
    flow = Flow("ml")
    out = flow.from_iterable(items).key_by("key").learn_predict(detector, **settings).collect()
    flow.execute()
    return out.values


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param({"id": 7, "key": "k1", "a": 1.0}, "has no feature field 'b'", id="missing"),
        pytest.param({"id": 7, "key": "k1", "a": 1.0, "b": "2"}, "is '2', not a number", id="text"),
        pytest.param({"id": 7, "key": "k1", "a": 1.0, "b": float("nan")}, "is nan, not a", id="nan"),
    ],
)
def test_a_record_without_numeric_features_fails_the_job_naming_operator_and_record(
    bad: dict[str, Any], message: str
) -> None:
    items = [*records(20), bad]
    with pytest.raises(ValueError, match=message) as raised:
        run_keyed(items, features=FEATURES)
    (line,) = str(raised.value).splitlines()
    assert line.startswith("learn_predict[1/1]: ") and "'id': 7" in line


def test_features_that_are_not_a_dict_and_a_missing_target_fail_naming_the_record() -> None:
    with pytest.raises(ValueError, match=r"learn_predict\[1/1\]: features\(\) gave list, not a dict"):
        run_keyed(records(5), features=lambda r: [r["a"]])
    flow = Flow("ml")
    items = [*records(5), {"id": 99, "key": "k1", "a": 1.0, "b": 2.0}]
    flow.from_iterable(items).key_by("key").learn_predict(
        regressor, features=FEATURES, target="y"
    ).collect()
    with pytest.raises(ValueError, match=r"record \{'id': 99.*has no target \(field 'y'"):
        flow.execute()


def test_bad_records_go_to_dead_letters_and_leave_the_model_as_it_was() -> None:
    good = records(300)
    bad = [{"id": 1000 + n, "key": f"k{n % KEYS}", "a": 1.0, "b": None} for n in range(10)]
    items = good[:100] + bad[:5] + good[100:] + bad[5:]
    dead: OutputTag[FailedRecord[dict[str, Any]]] = OutputTag("dead")
    flow = Flow("ml", parallelism=2)
    scored = (
        flow.from_iterable(items)
        .key_by("key")
        .learn_predict(regressor, features=FEATURES, target="y", dead_letters=dead)
    )
    good_out, dead_out = scored.collect(), scored.get_side_output(dead).collect()
    flow.execute()
    assert by_id(good_out.values) == reference(regressor, "supervised", good, key=lambda r: r["key"])
    assert sorted(f.value["id"] for f in dead_out.values) == [r["id"] for r in bad]
    assert all(isinstance(f.error, ValueError) and "not a number" in str(f.error) for f in dead_out.values)


# -- plan errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "settings", "message"),
    [
        pytest.param(
            preprocessing.StandardScaler, {}, "StandardScaler is not a model it can run", id="transformer"
        ),
        pytest.param(lambda: object(), {}, "object is not a model it can run", id="object"),
        pytest.param(regressor, {}, "Pipeline learns from a target: give target=", id="no-target"),
        pytest.param(
            detector, {"target": "y"}, "HalfSpaceTrees learns without a target", id="needless-target"
        ),
        pytest.param(detector(), {}, "takes a function that makes a model", id="a-model"),
        pytest.param(detector, {"features": "a"}, "features= takes a list of field names", id="string"),
        pytest.param(detector, {"features": []}, "features= needs one field name", id="no-features"),
    ],
)
def test_a_model_or_settings_it_cannot_run_are_a_plan_error_naming_the_operator(
    make: Any, settings: dict[str, Any], message: str
) -> None:
    stream = Flow("ml").from_iterable(records(3)).key_by("key")
    with pytest.raises(PlanError, match=message) as raised:
        stream.learn_predict(make, **{"features": FEATURES, **settings}, name="score")
    assert str(raised.value).startswith("score") and "\n" not in str(raised.value)


def test_without_river_learn_predict_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "river", None)  # import river now raises ImportError
    stream = Flow("ml").from_iterable(records(3))
    with pytest.raises(PlanError) as raised:
        stream.learn_predict(lambda: object(), features=FEATURES)
    assert str(raised.value) == "learn_predict needs river: pip install 'actorflow[ml]'"


def test_importing_actorflow_and_actorflow_ml_does_not_import_river() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, actorflow, actorflow.ml; assert 'river' not in sys.modules, 'river imported'",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


class LastSeen:
    """Not a river model: predicts the previous target (learn_one takes two arguments)."""

    def __init__(self) -> None:
        self.last: Any = None

    def predict_one(self, x: dict[str, Any]) -> Any:
        return self.last

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        self.last = y


class Counter:
    """Not a river model: predicts how many records it learnt from (learn_one takes one)."""

    def __init__(self) -> None:
        self.seen = 0

    def predict_one(self, x: dict[str, Any]) -> int:
        return self.seen

    def learn_one(self, x: dict[str, Any]) -> None:
        self.seen += 1


def test_another_object_is_supervised_when_its_learn_one_takes_a_target() -> None:
    flow = Flow("ml")
    stream = flow.from_iterable(records(6)).key_by("key")
    with pytest.raises(PlanError, match="LastSeen learns from a target"):
        stream.learn_predict(LastSeen, features=FEATURES)
    last = stream.learn_predict(LastSeen, features=FEATURES, target="id").collect()
    counted = flow.from_iterable(records(6)).learn_predict(Counter, features=FEATURES).collect()
    flow.execute()
    previous: dict[str, int] = {}
    for record in records(6):
        assert by_id(last.values)[record["id"]] == previous.get(record["key"])
        previous[record["key"]] = record["id"]
    assert sorted(by_id(counted.values).items()) == [(n, n) for n in range(6)]
