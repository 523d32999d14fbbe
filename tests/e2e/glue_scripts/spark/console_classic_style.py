# ruff: noqa: F403, F405, E501, I001
import sys
from awsglue.transforms import *
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from awsglue.context import GlueContext
from awsglue.job import Job

## @params: [JOB_NAME, database, table_name, target_path]
args = getResolvedOptions(sys.argv, ['JOB_NAME', 'database', 'table_name', 'target_path'])

sc = SparkContext()
glueContext = GlueContext(sc)
spark = glueContext.spark_session
job = Job(glueContext)
job.init(args['JOB_NAME'], args)
## @type: DataSource
## @args: [database = "<database>", table_name = "<table_name>", transformation_ctx = "datasource0"]
## @return: datasource0
## @inputs: []
datasource0 = glueContext.create_dynamic_frame.from_catalog(database = args['database'], table_name = args['table_name'], transformation_ctx = "datasource0")
## @type: ApplyMapping
## @args: [mapping = [("parcel_id", "string", "parcel_id", "string"), ("depot", "string", "depot_code", "string"), ("weight_g", "long", "weight_g", "long"), ("pieces", "long", "pieces", "int"), ("legacy_ref", "string", "legacy_ref", "string")], transformation_ctx = "applymapping1"]
## @return: applymapping1
## @inputs: [frame = datasource0]
applymapping1 = ApplyMapping.apply(frame = datasource0, mappings = [("parcel_id", "string", "parcel_id", "string"), ("depot", "string", "depot_code", "string"), ("weight_g", "long", "weight_g", "long"), ("pieces", "long", "pieces", "int"), ("legacy_ref", "string", "legacy_ref", "string")], transformation_ctx = "applymapping1")
## @type: ResolveChoice
## @args: [choice = "make_struct", transformation_ctx = "resolvechoice2"]
## @return: resolvechoice2
## @inputs: [frame = applymapping1]
resolvechoice2 = ResolveChoice.apply(frame = applymapping1, choice = "make_struct", transformation_ctx = "resolvechoice2")
## @type: DropNullFields
## @args: [transformation_ctx = "dropnullfields3"]
## @return: dropnullfields3
## @inputs: [frame = resolvechoice2]
dropnullfields3 = DropNullFields.apply(frame = resolvechoice2, transformation_ctx = "dropnullfields3")
## @type: DataSink
## @args: [connection_type = "s3", connection_options = {"path": "<target_path>"}, format = "parquet", transformation_ctx = "datasink4"]
## @return: datasink4
## @inputs: [frame = dropnullfields3]
datasink4 = glueContext.write_dynamic_frame.from_options(frame = dropnullfields3, connection_type = "s3", connection_options = {"path": args['target_path']}, format = "parquet", transformation_ctx = "datasink4")
job.commit()
