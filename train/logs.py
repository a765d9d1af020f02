"""The ``calcidet`` logger's one stderr handler: level from ``-v``/``-q``, rank zero only under DDP.

Library code logs through ``logging.getLogger("calcidet")`` and never configures it; the command
(``calcidet.train.cli.main``) calls ``setup_logging`` once, as an application should.

    calcidet -q synth --out /tmp/s --n 4     # warnings only
    calcidet -v fit --config configs/demo.yaml   # debug lines too
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from pytorch_lightning.utilities import rank_zero_only

LOGGER = "calcidet"
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


def current_rank() -> int:
    """This process's global rank: Lightning's (its strategies set it), else the launcher's variables."""
    rank = getattr(rank_zero_only, "rank", None)
    if rank is not None:
        return int(rank)
    for name in ("RANK", "LOCAL_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


class RankZeroFilter(logging.Filter):
    """Pass everything on rank 0; on other ranks only warnings and errors, marked with the rank.

    The rank is read per record, not once: Lightning sets it when the strategy starts, after logging
    was set up. A warning on rank 3 still matters (its data, its GPU), so it is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = current_rank()
        return record.rank == 0 or record.levelno >= logging.WARNING


class CalcidetFormatter(logging.Formatter):
    """``calcidet: message`` for info; the level name otherwise; the rank when it is not 0."""

    def format(self, record: logging.LogRecord) -> str:
        rank = getattr(record, "rank", 0)
        where = f" [rank {rank}]" if rank else ""
        level = "" if record.levelno == logging.INFO else f"{record.levelname}: "
        return f"calcidet{where}: {level}{super().format(record)}"


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, not the one it was created with.

    A handler that kept the original stream would write past pytest's capture, or into a closed
    file after a test that swapped ``sys.stderr`` (the standard library's last-resort handler does the same).
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # StreamHandler.__init__ assigns it; the property above always wins


def setup_logging(verbosity: int = 0) -> logging.Logger:
    """Configure the ``calcidet`` logger for a command: one stderr handler, rank-zero filtered.

    Calling it again only changes the level (no second handler, no doubled lines).

    Args:
        verbosity: -1 warnings only (``-q``), 0 info (default), 1 debug (``-v``); clamped to that range.

    Returns:
        The ``calcidet`` logger.
    """
    logger = logging.getLogger(LOGGER)
    logger.setLevel(LEVELS[max(-1, min(1, verbosity))])
    if verbosity < 0:  # quiet means Lightning's own info lines ("GPU available: ...") too
        logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.addFilter(RankZeroFilter())  # on the handler: a logger's filters skip child loggers' records
        handler.setFormatter(CalcidetFormatter())
        logger.addHandler(handler)
    logger.propagate = False  # the command owns stderr: a configured root logger would print each line twice
    return logger
