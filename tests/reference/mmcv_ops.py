"""Test-only stand-in for ``mmcv.ops``, whose compiled extensions mmcv-lite
lacks. mmsegmentation imports some of its names (point_sample,
sigmoid_focal_loss, CrissCrossAttention, ...) when it is imported; DANet uses
none of them, so every name here is a callable that refuses to run."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def unavailable(*args, **kwargs):
        raise NotImplementedError(f"mmcv.ops.{name} needs mmcv's compiled extensions (not installed)")

    unavailable.__name__ = name
    return unavailable
