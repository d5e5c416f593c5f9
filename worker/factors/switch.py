"""Whether this worker computes betas now, and why not (FACTORS_ENABLED=auto|on|off).

The host's application seeds its factor names into `factor_definitions` at its own start-up, not
in its migrations, so a database can briefly lack them. With `on` the worker refuses to start
then; with `auto` prices keep flowing, each job that would have computed betas records its symbol
in `symbol_factor_waits` with nothing to wait for, and the housekeeping sweep looks again: once the
names are there, the switch turns on and that sweep computes the skipped betas, without a
restart. `status`, `/readyz` and `/metrics` read `available` and `reason`.
"""

import asyncpg
import structlog

from worker.core.db import Connection
from worker.core.errors import ConfigurationError
from worker.factors.store import FactorStore, ShapeError

log = structlog.get_logger("worker.factors")


class FactorSwitch:
    """The factor store when betas can be written, else why not; shared by the jobs, the
    housekeeping sweep and the HTTP endpoint of one worker (one event loop)."""

    def __init__(self, mode: str, store: FactorStore | None = None, reason: str | None = None):
        self.mode = mode
        self.store = store
        self.reason = reason

    @classmethod
    def on(cls, store: FactorStore) -> "FactorSwitch":
        return cls("on", store)

    @classmethod
    async def detect(
        cls, db: Connection | asyncpg.Pool, mode: str, *, log_unavailable: bool = True
    ) -> "FactorSwitch":
        """Read the table shape once at start-up. ConfigurationError (one line) with `on` where
        betas cannot be written; with `auto` a `factors_unavailable` warning instead."""
        if mode == "off":
            return cls(mode, reason="FACTORS_ENABLED=off")
        try:
            return cls(mode, await FactorStore.detect(db))
        except ShapeError as exc:
            if mode == "on":
                raise ConfigurationError(
                    f"cannot write factor betas: {exc} (or set FACTORS_ENABLED=auto or off)"
                ) from None
            if log_unavailable:
                log.warning(
                    "factors_unavailable",
                    reason=str(exc),
                    hint="prices keep flowing; betas are computed once the names are seeded",
                )
            return cls(mode, reason=str(exc))

    @classmethod
    async def probe(cls, db: Connection | asyncpg.Pool, mode: str) -> "FactorSwitch":
        """What a worker with FACTORS_ENABLED=`mode` would find, for the commands that report
        it (`status`, `show`): never refuses (`on` reads as `auto`) and logs nothing."""
        return await cls.detect(db, "auto" if mode == "on" else mode, log_unavailable=False)

    @property
    def available(self) -> bool:
        return self.store is not None

    @property
    def unavailable(self) -> str | None:
        """Why betas are wanted but cannot be written (None: written, or turned off)."""
        return self.reason if self.mode == "auto" and self.store is None else None

    @property
    def skipping(self) -> bool:
        """Betas are wanted but cannot be written yet: record the symbols for later."""
        return self.store is None and self.mode == "auto"

    async def look_again(self, db: Connection | asyncpg.Pool) -> bool:
        """Housekeeping: with `auto` and no store, read the shape again; True when betas can be
        written (now or already)."""
        if self.store is not None:
            return True
        if self.mode != "auto":
            return False
        try:
            self.store = await FactorStore.detect(db)
        except ShapeError as exc:
            self.reason = str(exc)
            return False
        self.reason = None
        log.info("factors_available", shape=self.store.shape)
        return True
