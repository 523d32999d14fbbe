# ruff: noqa: F403, F405, I001
import sys
from awsglue.transforms import *
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from awsglue.context import GlueContext
from awsglue.job import Job

args = getResolvedOptions(sys.argv, ["JOB_NAME", "source_path", "target_path"])
sc = SparkContext()
glueContext = GlueContext(sc)
spark = glueContext.spark_session
job = Job(glueContext)
job.init(args["JOB_NAME"], args)

# Script generated for node Amazon S3
AmazonS3_node1700000000000 = glueContext.create_dynamic_frame.from_options(
    format_options={"multiline": False},
    connection_type="s3",
    format="json",
    connection_options={"paths": [args["source_path"]], "recurse": True},
    transformation_ctx="AmazonS3_node1700000000000",
)

# Script generated for node Change Schema
ChangeSchema_node1700000000001 = ApplyMapping.apply(
    frame=AmazonS3_node1700000000000,
    mappings=[
        ("id", "string", "shipment_id", "string"),
        ("weight", "double", "weight_kg", "double"),
        ("parcels", "int", "parcels", "long"),
        ("destination.country", "string", "country", "string"),
        ("destination.city", "string", "city", "string"),
        ("customer_email", "string", "customer_email", "string"),
    ],
    transformation_ctx="ChangeSchema_node1700000000001",
)

# Script generated for node Drop Fields
DropFields_node1700000000002 = DropFields.apply(
    frame=ChangeSchema_node1700000000001,
    paths=["customer_email"],
    transformation_ctx="DropFields_node1700000000002",
)

# Script generated for node Amazon S3
AmazonS3_node1700000000003 = glueContext.write_dynamic_frame.from_options(
    frame=DropFields_node1700000000002,
    connection_type="s3",
    format="glueparquet",
    connection_options={"path": args["target_path"], "partitionKeys": ["country"]},
    format_options={"compression": "snappy"},
    transformation_ctx="AmazonS3_node1700000000003",
)

job.commit()
