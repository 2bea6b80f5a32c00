"""Config tree of wantrain, packaged as `wantrain.conf` (see pyproject)."""
