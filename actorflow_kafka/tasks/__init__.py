"""Partition tasks: a flow split by input partition, its state in Kafka, run by many workers.

``KafkaSource(..., group_id=..., tasks=True)`` makes ``flow.run()`` run the flow here instead of on
the in-process runtime: :mod:`~actorflow_kafka.tasks.job` (the worker: one consumer, one task per
assigned partition, rebalances), :mod:`~actorflow_kafka.tasks.task` (one task: the flow at one
instance per operator, its checkpoints and its transaction), :mod:`~actorflow_kafka.tasks.feed`
(the task's source), :mod:`~actorflow_kafka.tasks.changelog` (state records, changelog topics,
restore) and :mod:`~actorflow_kafka.tasks.transaction` (how a sink inside a task writes into the
task's transaction).
"""
