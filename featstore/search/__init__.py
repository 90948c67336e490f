"""Nearest-neighbour search over stored vectors: exact (chunked matrix products, the reference)
and an approximate index kept in the store as a derived artifact; near-duplicate groups and
leakage between datasets built on it. Reads vectors the way heads do (`featstore.heads.inputs`)
and never reaches the encoder: texts a store lacks are featurized by `featstore.services`."""
