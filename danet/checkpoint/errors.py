from ..errors import InputError


class CheckpointError(InputError):
    """A checkpoint that cannot be used as asked."""
