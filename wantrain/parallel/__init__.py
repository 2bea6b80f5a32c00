"""Parallelism applied to plain modules (torchtitan's split: the model code never sees it): the device mesh, FSDP2
sharding with per-block checkpointing and compile, and sequence (context) parallelism. No Lightning here."""
