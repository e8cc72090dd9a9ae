"""One module per command group; each exposes `register(subparsers)` (see loaxa.cli)."""
