"""BigQuery aborts one of two transactions that change the same table at once; the loser is run
again after a pause, here rather than through a whole redelivery."""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as gexc

from shared import logs

log = logs.get(__name__)
T = TypeVar("T")
MARKERS = ("transaction is aborted due to concurrent update", "could not serialize access")


def is_conflict(error: BaseException) -> bool:
    return isinstance(error, gexc.GoogleAPICallError) and any(m in str(error).lower() for m in MARKERS)


def retry_on_conflict(action: Callable[[], T], *, attempts: int = 6, first_delay_s: float = 0.5,
                      max_delay_s: float = 8.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Runs `action`, again after a jittered exponential pause while it fails with a conflict."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except gexc.GoogleAPICallError as error:
            if attempt == attempts or not is_conflict(error):
                raise
            delay = min(max_delay_s, first_delay_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.warning("concurrent update (attempt %d of %d), again in %.1f s: %s", attempt, attempts, delay,
                        str(error).splitlines()[0][:200])
            sleep(delay)
    raise AssertionError("unreachable")
