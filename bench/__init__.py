"""langscale benchmarks: prompt pickup (bench.pickup) and the load generator (bench.loadgen),
measured side by side with peers (plain arq, Celery threads, no-queue asyncio)."""
