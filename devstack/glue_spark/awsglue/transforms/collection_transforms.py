from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class SelectFromCollection(GlueTransform):
    """The frame named ``key`` of a DynamicFrameCollection."""

    def __call__(self, dfc, key, transformation_ctx=""):
        return dfc.select(key, transformation_ctx)


class MapToCollection(GlueTransform):
    """Applies ``callable(frame, transformation_ctx)`` to every frame of a collection."""

    def __call__(self, dfc, callable, transformation_ctx=""):
        return dfc.map(callable, transformation_ctx)

    @classmethod
    def describeReturn(cls):
        return {"type": "DynamicFrameCollection", "description": "the transformed frames"}


class FlatMap(GlueTransform):
    """Applies a transform to every frame of a collection and flattens the results."""

    def __call__(self, dfc, BaseTransform, frame_name, transformation_ctx="", **base_kwargs):
        def apply_inner(frame, ctx):
            return BaseTransform.apply(**{**base_kwargs, frame_name: frame, "transformation_ctx": ctx})

        return dfc.flatmap(apply_inner, transformation_ctx)

    @classmethod
    def describeReturn(cls):
        return {"type": "DynamicFrameCollection", "description": "the transformed frames"}
