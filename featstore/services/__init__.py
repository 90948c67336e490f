"""What the command line and a notebook both need, above featurize and heads: featurizing the
texts a store lacks, datasets named by file, predictions as a table, fitting and saving heads,
comparing configurations. Nothing here parses arguments or prints."""
