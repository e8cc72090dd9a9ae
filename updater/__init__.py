"""Software updates (SPEC "Software updates"; docs/design.md, "Software updates").

- `updater.release`: release documents, their judgement under the trust model, and the
  rule for which release a unit follows (pure);
- `updater.install`: download (resumed, verified), install beside the running version
  under a prefix, atomic switch of `current`;
- `updater.launcher`: the stdlib-only launcher outside every version, with its
  boot-attempt counter and health-gated rollback;
- `updater.health`: the daemon's side of the health gate;
- `updater.bundle`: `loaxa release build`'s wheel bundle.
"""
