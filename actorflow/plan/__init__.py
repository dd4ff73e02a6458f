"""The plan layer: the logical graph a flow builds, and its compilation into actors.

Imports the operators, state, time and runtime layers below it, never :mod:`actorflow.api`.
"""
