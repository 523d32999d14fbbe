"""A local implementation of AWS Glue's ``awsglue`` library on plain PySpark."""


def __getattr__(name: str):
    # ``from awsglue import DynamicFrame`` as with AWS's package, without importing Spark
    # for scripts that only need ``awsglue.utils``
    if name == "DynamicFrame":
        from awsglue.dynamicframe import DynamicFrame

        return DynamicFrame
    raise AttributeError(f"module 'awsglue' has no attribute {name!r}")
