"""Incremental load with a job bookmark: each run reads only the event files added since the
last committed run, and writes them (and their count) under a folder of its own run id."""

import sys

from awsglue.context import GlueContext
from awsglue.job import Job
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from pyspark.sql import functions as F

args = getResolvedOptions(sys.argv, ["JOB_NAME", "source_path", "target_path"])
sc = SparkContext()
glueContext = GlueContext(sc)
spark = glueContext.spark_session
job = Job(glueContext)
job.init(args["JOB_NAME"], args)

events = glueContext.create_dynamic_frame.from_options(
    connection_type="s3",
    connection_options={"paths": [args["source_path"]], "recurse": True},
    format="json",
    transformation_ctx="events_source",
)
run_folder = args["target_path"].rstrip("/") + "/" + args["JOB_RUN_ID"]
count = events.count()
print(f"new events: {count}", flush=True)

glueContext.write_dynamic_frame.from_options(
    frame=events,
    connection_type="s3",
    connection_options={"path": run_folder + "/records/"},
    format="json",
    transformation_ctx="events_sink",
)
summary = spark.createDataFrame([(args["JOB_RUN_ID"], count)], ["run_id", "records"]).withColumn(
    "records", F.col("records").cast("long")
)
summary.coalesce(1).write.mode("overwrite").json(run_folder + "/count/")

job.commit()
