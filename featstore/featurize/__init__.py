"""The encoder pass: corpus readers, the frozen encoder, windows, batching, per-layer reductions,
LASER, and the engines (local, Ray) that turn new texts into committed shards.

Writes only through `featstore.store`. The public entry points live in
`featstore.featurize.driver`; this package file stays empty so importing a light module (the
options, the corpus readers) never loads torch.
"""
