"""The API layer: :class:`Flow`, :class:`DataStream`, :class:`KeyedStream` build a logical graph.

Imports every layer below it; only the CLI and the Kafka connector sit above it.
"""
