"""Logging for the daemons: one line per record on stderr (journald adds the time and unit).

Personal data never reaches a log call in the first place; this module only formats.
"""

from __future__ import annotations

import logging
import sys


def setup(level: str) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # paho/aiomqtt debug lines would drown the station's own story
    logging.getLogger("aiomqtt").setLevel(max(logging.WARNING, root.level))
    # aiosqlite logs every statement at debug: ~3 lines a second of noise on an idle station
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))
