from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class ResolveChoice(GlueTransform):
    """Resolves choice types: ``specs`` (a list of (path, action)) or one ``choice`` action.

    Actions: ``cast:<type>``, ``project:<type>``, ``make_cols``, ``make_struct``.
    """

    def __call__(
        self,
        frame,
        specs=None,
        choice="",
        database=None,
        table_name=None,
        transformation_ctx="",
        info="",
        stageThreshold=0,
        totalThreshold=0,
    ):
        return frame.resolveChoice(
            specs, choice, database, table_name, transformation_ctx, info, stageThreshold, totalThreshold
        )
