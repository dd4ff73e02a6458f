"""The runtime layer: actors, mailboxes, messages, watermark merging, job supervision.

The lowest layer of actorflow: it imports nothing from the layers above it.
"""
