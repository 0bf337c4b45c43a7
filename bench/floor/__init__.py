"""The floor: what the Temporal engine alone does on this machine, for every scenario.

A floor workflow (`workflows.FloorWorkflow`) has the shape of a reelflow execution — the same
activities and signals in the same order — with no database, storage or HTTP: its activities
only keep time. It runs on the same Temporal server as reelflow, on a worker process of its own
(`python -m bench.floor.worker`), so each reelflow figure can be read as a ratio to the engine.

    types.py       the dataclasses crossing the workflow boundary
    activities.py  start (arranges the "webhook" signal), poll, persist, record
    workflows.py   FloorWorkflow (sandbox-safe: imports nothing that does I/O)
    worker.py      the worker process
"""
