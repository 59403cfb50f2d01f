"""What every measurement receives: iteration counts, and a Prefect server shared by the
measurements that need one (started on first use, stopped at the end of the run)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field


@dataclass
class Context:
    iterations: int = 2000  # issue 5: p50/p99 over at least 2,000 iterations
    warmup: int = 100
    quick: bool = False  # for trying the scripts out: far fewer iterations, numbers meaningless
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)
    _api_url: str | None = field(default=None, repr=False)

    @classmethod
    def make(cls, quick: bool) -> Context:
        if quick:
            return cls(iterations=200, warmup=20, quick=True)
        return cls()

    def prefect_api(self) -> str:
        """The API URL of a real ``prefect server start`` (see bench/prefect_server.py)."""
        if self._api_url is None:
            from bench.prefect_server import prefect_server

            self._api_url = self._stack.enter_context(prefect_server())
        return self._api_url

    def close(self) -> None:
        self._stack.close()
