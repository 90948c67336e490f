"""featstore's version, in one place (the package metadata and `featstore --version` read it)."""

VERSION = "0.1.0"
