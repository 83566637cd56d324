"""The command line and the process model: `serve` (with `--workers`), `check-config`,
`conversions` and `report`."""
