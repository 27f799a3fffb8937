from .checkpointer import CheckpointError, SafeCheckpointer
