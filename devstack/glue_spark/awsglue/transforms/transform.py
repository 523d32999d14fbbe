"""``GlueTransform``: the base class of every transform in ``awsglue.transforms``."""

from __future__ import annotations

import inspect


class GlueTransform:
    """A transform is called as ``Transform.apply(frame=..., ...)`` or ``Transform()(frame, ...)``.

    Subclasses define ``__call__``; ``describe()`` reports its arguments from that signature.
    """

    @classmethod
    def apply(cls, *args, **kwargs):
        return cls()(*args, **kwargs)

    @classmethod
    def name(cls):
        return cls.__name__

    @classmethod
    def describeArgs(cls):
        args = []
        for param in list(inspect.signature(cls.__call__).parameters.values())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            optional = param.default is not param.empty
            args.append(
                {
                    "name": param.name,
                    "type": "DynamicFrame" if param.name in ("frame", "frame1", "frame2") else "",
                    "description": "",
                    "optional": optional,
                    "defaultValue": repr(param.default) if optional else None,
                }
            )
        return args

    @classmethod
    def describeReturn(cls):
        return {"type": "DynamicFrame", "description": ""}

    @classmethod
    def describeTransform(cls):
        return (inspect.getdoc(cls) or "").split("\n\n")[0]

    @classmethod
    def describeErrors(cls):
        return []

    @classmethod
    def describe(cls):
        return {
            "transform": {
                "name": cls.name(),
                "args": cls.describeArgs(),
                "returns": cls.describeReturn(),
                "description": cls.describeTransform(),
                "raises": cls.describeErrors(),
                "location": "internal",
            }
        }

    def __eq__(self, other):
        return isinstance(other, self.__class__) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash(self.__class__)

    def __repr__(self):
        return f"<Transform: {self.name()}>"
