"""CLI commands: each module exposes `run(cfg, action)`; Hydra lives only here and in __main__."""
