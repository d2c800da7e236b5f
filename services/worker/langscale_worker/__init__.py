"""langscale's worker: runs LangChain pipelines taken from the Redis queue."""

from langscale_worker.retries import RetriableError

__all__ = ["RetriableError"]
