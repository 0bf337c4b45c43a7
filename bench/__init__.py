"""reelflow's benchmark harness: `python -m bench [--scenarios ...] [--runs 3] [--quick]`.

Each run starts the whole system on embedded defaults and free ports (Temporal dev server,
PostgreSQL from DATABASE_URL or pgserver, the provider emulator, the worker and the API as
processes), plus a floor worker and a payload file server; runs the scenarios of the
performance issue, each against its floor (`bench.floor`); and stops it all. The figures are
medians over the runs, printed as one table and written to `bench/results/<timestamp>.json`.

    stack.py       the processes of one run (reusing the chaos harness's Cluster)
    harness.py     clients, reelflow and floor helpers, load loops
    scenarios/     one module per scenario
    floor/         the bare Temporal workflow, its activities and worker
    payloads.py    big real MP4s; fileserver.py serves them as a provider's CDN would
    procs.py       CPU time and memory from /proc
    results.py     figures, targets, medians, the table, the JSON
"""
