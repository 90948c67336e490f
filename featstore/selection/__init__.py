"""Model selection over heads on the cache: the `--auto` search (`auto`), its candidates and
recipes, the greedy ensemble selection, self-training, `compare`'s grid and `probe-layers`.

Everything here chooses among configurations of `featstore.heads` by scores on training rows
(inner cross-validation) or, for `compare` and `probe-layers`, reports them side by side; it
reads vectors only through heads. `settings` is light (no torch) for the command line.
"""
