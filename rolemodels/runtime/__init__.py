"""What the paper never mentions: how a run is kept, resumed and spread out, and where tensors live.

    files.py       atomic writes (the one writer every command uses), checksums
    manifest.py    size and SHA-256 of every finished file of a run folder
    lock.py        one process per run folder
    runfolder.py   the run folder checked against the configuration, locked, cleaned
    world.py       torchrun's ranks: World, shards, DDP
    threads.py     several trainings at once in one process
    progress.py    progress lines on the terminal
    work.py        the executor the pipeline's stages call (models, rows, shared arrays, timing)
    session.py     a run's start: threads, ranks, device, then the run folder and its Work
    provenance.py  version, git commit and source hash for results.json
    device.py      devices, precision, tensors kept on the device, prediction in batches
"""
