"""deploy/etl-environment.yaml: lint-clean, the contract's names for `local`, disjoint names for any
other environment, least-privilege roles held to the AWS calls the code makes, and the basics of
security (encryption, no public access, TLS only, no literal password, no empty parameter).

The template is evaluated by ``cfn_eval`` (a small intrinsic-function evaluator) for given parameter
values; nothing here reaches AWS.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import resources as devstack_resources
from devstack.airflow_config import AWS_SESSION_FACTORY
from devstack.resources import provisioned_names
from etl_toolkit import environment

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn_eval  # noqa: E402 - the helper beside this file

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO / "deploy" / "etl-environment.yaml"
ACCOUNT = environment.ACCOUNT_ID
REGION = "eu-west-1"
PARAMETERS = {
    "VpcId": "vpc-0a1b2c3d",
    "SubnetIds": ["subnet-0aaa1111", "subnet-0bbb2222"],
    "GlueSubnetId": "subnet-0aaa1111",
    "GlueAvailabilityZone": "eu-west-1a",
    "WarehouseEndpoint": "warehouse.example.internal",
    "SourceEndpoint": "totesys.example.internal",
    "SupplychainSourceEndpoint": "supplychain.example.internal",
    "NotificationEmail": "data-team@example.com",
}
ENVIRONMENTS = ("prod", "dev")  # two environments that share one account

# Resources of the deployment itself, not names the pipelines use (not in the Variable, not
# provisioned by devstack): logical id -> why.
DEPLOYMENT_ONLY = {
    "MwaaSourceBucket": "MWAA's dags/, plugins.zip and requirements.txt",
    "MwaaExecutionRole": "the role Airflow runs as; the toolkit never names it",
    "WarehouseDbConnectionSecret": "Airflow connection for MWAA's secrets backend",
    "TotesysDbConnectionSecret": "Airflow connection for MWAA's secrets backend",
    "SupplychainDbConnectionSecret": "Airflow connection for MWAA's secrets backend",
    "AwsDefaultConnectionSecret": "Airflow connection for MWAA's secrets backend",
    "EtlEnvironmentVariableSecret": "the Variable itself, for MWAA's secrets backend",
}
# String parameters that may be empty, and why.
MAY_BE_EMPTY = {
    "PluginsS3ObjectVersion": "empty = omitted: the first deploy, before plugins.zip has a version to name",
    "RequirementsS3ObjectVersion": "empty = omitted: the first deploy, before requirements.txt has a version to name",
}


@functools.cache
def template() -> dict:
    return cfn_eval.load(TEMPLATE_PATH)


@functools.cache
def stack(name: str, **overrides: str) -> cfn_eval.Stack:
    return cfn_eval.Stack(template(), {**PARAMETERS, "EnvironmentName": name, **overrides}, account=ACCOUNT,
                          region=REGION)  # fmt: skip


@functools.cache
def resources(name: str) -> dict[str, dict]:
    return stack(name).resources()


def variable(name: str) -> dict:
    """The Variable etl_environment the template writes, parsed."""
    return json.loads(resources(name)["EtlEnvironmentVariableSecret"]["Properties"]["SecretString"])


def of_type(name: str, kind: str) -> dict[str, dict]:
    return {lid: r for lid, r in resources(name).items() if r["Type"] == kind}


def created_names(name: str) -> dict[str, set[str]]:
    """What the template creates, by kind (the kinds of devstack's provisioned_names)."""
    keep = {lid: r["Properties"] for lid, r in resources(name).items() if lid not in DEPLOYMENT_ONLY}
    by_type = {
        "buckets": ("AWS::S3::Bucket", lambda p: p["BucketName"]),
        "topics": ("AWS::SNS::Topic", lambda p: p["TopicName"]),
        "catalog_databases": ("AWS::Glue::Database", lambda p: p["DatabaseInput"]["Name"]),
        "glue_connections": ("AWS::Glue::Connection", lambda p: p["ConnectionInput"]["Name"]),
        "secrets": ("AWS::SecretsManager::Secret", lambda p: p["Name"]),
        "roles": ("AWS::IAM::Role", lambda p: p["RoleName"]),
        "queues": ("AWS::SQS::Queue", lambda p: p["QueueName"]),
        "event_rules": ("AWS::Events::Rule", lambda p: p["Name"]),
    }
    return {
        kind: {name_of(keep[lid]) for lid, r in resources(name).items() if lid in keep and r["Type"] == rtype}
        for kind, (rtype, name_of) in by_type.items()
    }


def topic_name(name_or_arn: str) -> str:
    return name_or_arn.rsplit(":", 1)[-1]


# -- a. lint ------------------------------------------------------------------------------------------------


def test_cfn_lint_is_clean():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), str(TEMPLATE_PATH)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# -- b. the local environment is the contract ------------------------------------------------------------


def test_local_variable_is_the_contract():
    env = environment.validate(variable("local"))
    local = environment.validate(environment.LOCAL)
    names = env.names()
    names["topics"] = {key: topic_name(value) for key, value in names["topics"].items()}  # written as ARNs
    assert names == local.names()
    assert set(env.topics.values()) == {f"arn:aws:sns:{REGION}:{ACCOUNT}:{t}" for t in local.topics.values()}
    assert env.glue_role_arn == local.glue_role_arn
    assert env.glue_prefix == ""


def test_local_creates_what_devstack_provisions():
    assert created_names("local") == provisioned_names()


# -- c. any other environment: its own names, all created, disjoint from the others ----------------------


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_every_name_in_the_variable_is_created(name):
    env = environment.validate(variable(name))
    assert env.name == name and env.glue_prefix == f"{name}-"
    created = created_names(name)
    assert set(env.buckets.values()) <= created["buckets"]
    topic_arns = {stack(name).ref(lid) for lid in of_type(name, "AWS::SNS::Topic")}
    assert set(env.topics.values()) <= topic_arns
    assert set(env.catalog_databases.values()) <= created["catalog_databases"]
    assert set(env.glue_connections.values()) <= created["glue_connections"]
    assert set(env.secrets.values()) <= created["secrets"]
    assert env.glue_role_arn in {stack(name).get_att(lid, "Arn") for lid in of_type(name, "AWS::IAM::Role")}
    assert set(env.queues.values()) <= created["queues"]
    # and the other way round: every contract resource is in the Variable
    assert created["buckets"] == set(env.buckets.values())
    assert {topic_name(arn) for arn in env.topics.values()} == created["topics"]
    # the marker queues, and beside each its dead-letter queue (not in the Variable: nothing reads it)
    dead_letter = {f"{queue}{environment.DEAD_LETTER_SUFFIX}" for queue in env.queues.values()}
    assert created["queues"] == set(env.queues.values()) | dead_letter
    assert created["event_rules"] == set(env.queues.values())


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_no_name_is_a_local_default(name):
    env = environment.validate(variable(name))
    local = environment.validate(environment.LOCAL)
    for section, values in env.names().items():
        mine = {topic_name(v) if section == "topics" else v for v in values.values()}
        assert not mine & set(local.names()[section].values()), section
    assert env.glue_role_arn != local.glue_role_arn


def physical_names(name: str) -> set[str]:
    """Every name the stack gives a resource (what would collide in a shared account)."""
    st = stack(name)
    names = set()
    for lid, resource in resources(name).items():
        if resource["Type"] in cfn_eval.ATTRIBUTES:
            names.add(str(st.ref(lid)))
        for key in ("GroupName", "RoleName"):
            if key in resource["Properties"]:
                names.add(resource["Properties"][key])
    return names


def test_two_environments_share_an_account():
    first, second = (physical_names(name) for name in ENVIRONMENTS)
    assert len(first) > 25 and not first & second
    assert not physical_names("local") & first


@pytest.mark.parametrize("name", ("local", *ENVIRONMENTS, "a-twenty-char-envnam"))
def test_bucket_names_are_valid(name):
    assert len(name) <= 20
    for bucket in (r["Properties"]["BucketName"] for r in of_type(name, "AWS::S3::Bucket").values()):
        assert 3 <= len(bucket) <= 63, bucket
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", bucket), bucket
        assert not bucket.startswith(("xn--", "sthree-")) and not bucket.endswith(("-s3alias", "--ol-s3")), bucket


# -- d. least privilege, held to the calls the code makes ----------------------------------------------------

# Every AWS API the code calls (or an Airflow component or a library calls for it), by role: the
# boto3 client method, the provider hook method, or the provider or awsglue class used -> the IAM
# actions it needs, each with the kind of resource it acts on (see ``targets``).
MWAA_CALLS: dict[str, list[tuple[str, str]]] = {
    # boto3 client methods in plugins/etl_toolkit (markers, archive, s3, sns, tasks)
    "list_objects_v2": [("s3:ListBucket", "landing_buckets")],
    "get_object": [("s3:GetObject", "all_objects")],
    # a HEAD of a missing key answers 404 (not 403) only with ListBucket
    "head_object": [("s3:GetObject", "all_objects"), ("s3:ListBucket", "all_buckets")],
    "put_object": [("s3:PutObject", "landing_objects"), ("s3:PutObject", "artifact_objects")],  # markers; Glue scripts
    "copy_object": [("s3:GetObject", "landing_objects"), ("s3:PutObject", "copy_targets")],
    "delete_object": [("s3:DeleteObject", "landing_objects")],
    "delete_objects": [("s3:DeleteObject", "landing_objects")],
    "publish": [("sns:Publish", "topics")],
    "get_job_run": [("glue:GetJobRun", "glue_jobs")],
    "get_query_execution": [("athena:GetQueryExecution", "workgroup")],
    "get_caller_identity": [],  # sts:GetCallerIdentity: AWS allows it to every principal, no permission
    # the event start mode's marker queues, read in the triggerer (tasks/marker_events.py); IAM has
    # no actions for the batch calls: DeleteMessage and ChangeMessageVisibility allow them
    "get_queue_url": [("sqs:GetQueueUrl", "marker_queues")],
    "get_queue_attributes": [("sqs:GetQueueAttributes", "marker_queues")],
    "receive_message": [("sqs:ReceiveMessage", "marker_queues")],
    "delete_message": [("sqs:DeleteMessage", "marker_queues")],
    "delete_message_batch": [("sqs:DeleteMessage", "marker_queues")],
    "change_message_visibility": [("sqs:ChangeMessageVisibility", "marker_queues")],
    "change_message_visibility_batch": [("sqs:ChangeMessageVisibility", "marker_queues")],
    # provider hook methods in plugins/etl_toolkit
    "list_keys": [("s3:ListBucket", "all_buckets")],
    "read_key": [("s3:GetObject", "all_objects")],
    "check_for_key": [("s3:GetObject", "artifact_objects"), ("s3:ListBucket", "artifact_buckets")],
    "check_key_async": [("s3:ListBucket", "landing_buckets")],
    "get_query_results": [
        ("athena:GetQueryResults", "workgroup"),
        ("athena:GetQueryExecution", "workgroup"),
        ("s3:GetObject", "query_result_objects"),
    ],
    "has_crawler": [("glue:GetCrawler", "glue_crawlers")],
    "get_crawler": [("glue:GetCrawler", "glue_crawlers")],
    "create_crawler": [("glue:CreateCrawler", "glue_crawlers"), ("iam:PassRole", "glue_role")],
    "update_crawler": [
        ("glue:GetCrawler", "glue_crawlers"),
        ("glue:UpdateCrawler", "glue_crawlers"),
        ("iam:PassRole", "glue_role"),
    ],
    # provider classes the toolkit uses: their own calls (apache-airflow-providers-amazon 9.34.0)
    "GlueJobOperator": [  # update_config + replace_script_file + verbose + stop_job_run_on_kill
        ("glue:GetJob", "glue_jobs"),
        ("glue:CreateJob", "glue_jobs"),
        ("glue:UpdateJob", "glue_jobs"),
        ("glue:StartJobRun", "glue_jobs"),
        ("glue:GetJobRun", "glue_jobs"),
        ("glue:BatchStopJobRun", "glue_jobs"),
        ("iam:PassRole", "glue_role"),
        ("s3:PutObject", "artifact_objects"),
        ("logs:FilterLogEvents", "glue_job_logs"),
        ("logs:GetLogEvents", "glue_job_logs"),
    ],
    "GlueCrawlerRunOperator": [
        ("glue:StartCrawler", "glue_crawlers"),
        ("glue:GetCrawler", "glue_crawlers"),
        ("glue:GetCrawlerMetrics", "none"),
    ],
    "AthenaOperator": [  # Athena reads the catalog and the data, and writes the results, as the caller
        ("athena:StartQueryExecution", "workgroup"),
        ("athena:GetQueryExecution", "workgroup"),
        ("athena:StopQueryExecution", "workgroup"),
        ("glue:GetDatabase", "shipping_catalog"),
        ("glue:GetTable", "shipping_catalog"),
        ("glue:GetPartition", "shipping_catalog"),
        ("glue:GetPartitions", "shipping_catalog"),
        ("glue:BatchGetPartition", "shipping_catalog"),
        ("s3:ListBucket", "athena_buckets"),
        ("s3:GetBucketLocation", "athena_buckets"),
        ("s3:GetObject", "athena_objects"),
        ("s3:PutObject", "query_result_objects"),
        ("s3:AbortMultipartUpload", "query_result_objects"),
        ("s3:ListMultipartUploadParts", "query_result_objects"),
        ("s3:ListBucketMultipartUploads", "query_result_buckets"),
    ],
    "AthenaHook": [],  # only get_query_results (above)
    "S3Hook": [],  # its methods are in the table above
    "SnsHook": [],
    "BaseSessionFactory": [],  # the provider's, with the toolkit's loader: makes sessions, calls nothing
    "SqsHook": [],  # its aiobotocore client's calls are in the table above
    "S3KeySensor": [("s3:ListBucket", "landing_buckets")],  # wildcard key: a listing
    "S3KeyTrigger": [("s3:ListBucket", "landing_buckets")],
    "SnsNotifier": [("sns:Publish", "topics")],
    # not called by the code, needed for it
    "MWAA secrets backend (connections, Variables)": [("secretsmanager:GetSecretValue", "airflow_secrets")],
    "pyarrow S3FileSystem (parquet footers)": [("s3:GetObject", "all_objects"), ("s3:ListBucket", "all_buckets")],
}
GLUE_CALLS: dict[str, list[tuple[str, str]]] = {
    # boto3 client methods in include/glue_scripts
    "list_objects_v2": [("s3:ListBucket", "glue_read_buckets")],
    "head_object": [("s3:GetObject", "glue_read_objects"), ("s3:ListBucket", "glue_read_buckets")],
    "get_object": [("s3:GetObject", "glue_read_objects")],
    "put_object": [("s3:PutObject", "glue_write_objects")],
    "upload_file": [("s3:PutObject", "glue_write_objects"), ("s3:AbortMultipartUpload", "glue_write_objects")],
    "upload_fileobj": [("s3:PutObject", "glue_write_objects"), ("s3:AbortMultipartUpload", "glue_write_objects")],
    "copy_object": [("s3:GetObject", "glue_write_objects"), ("s3:PutObject", "glue_write_objects")],
    "delete_objects": [("s3:DeleteObject", "glue_write_objects")],
    "delete_object": [("s3:DeleteObject", "glue_write_objects")],
    "get_secret_value": [("secretsmanager:GetSecretValue", "database_secrets")],
    "get_partition": [("glue:GetPartition", "shipping_catalog")],
    # awsglue classes the scripts use
    "GlueContext": [
        ("glue:GetDatabase", "shipping_catalog"),
        ("glue:GetTable", "shipping_catalog"),
        ("glue:GetPartitions", "shipping_catalog"),
        ("glue:BatchGetPartition", "shipping_catalog"),
    ],  # from_catalog
    "Job": [],  # job.init/commit: bookmarks are off (no --job-bookmark-option), nothing to store
    "getResolvedOptions": [],
    "DropFields": [],  # a transform of a DynamicFrame in memory
    # not called by the scripts, done as the role
    "Spark and pyarrow on s3:// (reads, writes, overwrites)": [
        ("s3:ListBucket", "glue_read_buckets"),
        ("s3:GetBucketLocation", "glue_read_buckets"),
        ("s3:GetObject", "glue_read_objects"),
        ("s3:PutObject", "glue_write_objects"),
        ("s3:DeleteObject", "glue_write_objects"),
        ("s3:AbortMultipartUpload", "glue_write_objects"),
    ],
    "crawlers (S3 targets, the JDBC target)": [
        ("glue:GetDatabase", "catalog"),
        ("glue:GetTable", "catalog"),
        ("glue:GetTables", "catalog"),
        ("glue:CreateTable", "catalog"),
        ("glue:UpdateTable", "catalog"),
        ("glue:GetPartition", "catalog"),
        ("glue:GetPartitions", "catalog"),
        ("glue:BatchGetPartition", "catalog"),
        ("glue:CreatePartition", "catalog"),
        ("glue:BatchCreatePartition", "catalog"),
        ("glue:UpdatePartition", "catalog"),
        ("glue:BatchUpdatePartition", "catalog"),
        ("s3:ListBucket", "crawled_buckets"),
        ("s3:GetObject", "crawled_objects"),
        ("glue:GetConnection", "jdbc_connection"),
        ("secretsmanager:GetSecretValue", "warehouse_secret"),
    ],
    "job and crawler logs": [
        ("logs:CreateLogGroup", "glue_logs"),
        ("logs:CreateLogStream", "glue_logs"),
        ("logs:PutLogEvents", "glue_logs"),
    ],
    "NETWORK and JDBC connections (Glue's ENIs in the VPC)": [
        ("glue:GetConnection", "connections"),
        ("ec2:DescribeVpcEndpoints", "none"),
        ("ec2:DescribeRouteTables", "none"),
        ("ec2:DescribeNetworkInterfaces", "none"),
        ("ec2:DescribeSecurityGroups", "none"),
        ("ec2:DescribeSubnets", "none"),
        ("ec2:DescribeVpcAttribute", "none"),
        ("ec2:CreateNetworkInterface", "eni_create"),
        ("ec2:DeleteNetworkInterface", "enis"),
        ("ec2:CreateTags", "enis"),
        ("ec2:DeleteTags", "enis"),
    ],
}
# Actions granted on "*", each because it supports no resource-level permission.
NO_RESOURCE_LEVEL = {
    "glue:GetCrawlerMetrics": "IAM defines no resource type for it",
    **{f"ec2:Describe{what}": "EC2 Describe actions support no resource-level permissions"
       for what in ("VpcEndpoints", "RouteTables", "NetworkInterfaces", "SecurityGroups", "Subnets", "VpcAttribute")},
}  # fmt: skip
# The MWAA execution role policy AWS documents for an environment with an AWS owned key
# (docs.aws.amazon.com/mwaa/latest/userguide/mwaa-create-role.html): the template's
# "mwaa-environment" policy, action for action.
MWAA_BASELINE = {
    "Allow": {
        "airflow:PublishMetrics",
        "s3:GetObject*",
        "s3:GetBucket*",
        "s3:List*",
        "logs:CreateLogStream",
        "logs:CreateLogGroup",
        "logs:PutLogEvents",
        "logs:GetLogEvents",
        "logs:GetLogRecord",
        "logs:GetLogGroupFields",
        "logs:GetQueryResults",
        "logs:DescribeLogGroups",
        "s3:GetAccountPublicAccessBlock",
        "cloudwatch:PutMetricData",
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
        "sqs:SendMessage",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:GenerateDataKey*",
        "kms:Encrypt",
    },
    "Deny": {"s3:ListAllMyBuckets"},
}
# Kinds of resources another environment must never reach (Athena's workgroup primary and the
# Glue log groups are per account, shared by every environment in it).
ENVIRONMENT_OWN = {
    "all_buckets",
    "all_objects",
    "landing_buckets",
    "landing_objects",
    "copy_targets",
    "artifact_objects",
    "artifact_buckets",
    "query_result_objects",
    "query_result_buckets",
    "athena_buckets",
    "athena_objects",
    "topics",
    "marker_queues",
    "glue_jobs",
    "glue_crawlers",
    "glue_role",
    "shipping_catalog",
    "airflow_secrets",
    "glue_read_buckets",
    "glue_read_objects",
    "glue_write_objects",
    "database_secrets",
    "warehouse_secret",
    "catalog",
    "connections",
    "jdbc_connection",
    "crawled_buckets",
    "crawled_objects",
}

LANDING = tuple(environment.MARKER_QUEUES.values())  # every marker-driven pipeline's landing bucket
GLUE_READS = (*LANDING, "orders_staging", "totesys_processed", "shipping_staging", "supplychain_lakehouse",
              "glue_artifacts")  # fmt: skip
GLUE_WRITES = ("orders_staging", "totesys_ingestion", "totesys_processed", "shipping_staging", "supplychain_lakehouse",
               "glue_artifacts")  # fmt: skip
CRAWLED = ("orders_landing", "orders_staging", "ecommerce_raw", "shipping_staging", "totesys_processed",
           "supplychain_lakehouse")  # fmt: skip


def dag_sources() -> str:
    return "\n".join(path.read_text() for path in sorted((REPO / "dags").glob("*.py")))


def glue_job_bases() -> set[str]:
    return set(re.findall(r"script=\"(\w+)\.py\"", dag_sources()))


def crawler_bases() -> set[str]:
    return set(re.findall(r"crawler_config\(\s*\"([\w-]+)\"", dag_sources()))


def targets(name: str) -> dict[str, list[str]]:
    """Concrete ARNs, per kind, that the environment's roles must reach."""
    env = environment.validate(variable(name))
    st, r, a = stack(name), REGION, ACCOUNT

    def buckets(keys):
        return [f"arn:aws:s3:::{env.bucket(key)}" for key in keys]

    def objects(keys):
        return [f"arn:aws:s3:::{env.bucket(key)}/some/key.json" for key in keys]

    def glue(resource):
        return f"arn:aws:glue:{r}:{a}:{resource}"

    everything = tuple(environment.LOCAL["buckets"])
    etl, shipping = env.catalog_database("etl"), env.catalog_database("shipping")
    silver, gold = env.catalog_database("supplychain_silver"), env.catalog_database("supplychain_gold")
    secret = {lid: st.ref(lid) for lid in of_type(name, "AWS::SecretsManager::Secret")}
    prefix = resources(name)["EtlEnvironmentVariableSecret"]["Properties"]["Name"].rsplit("/variables/", 1)[0]
    group = f"arn:aws:logs:{r}:{a}:log-group:"
    return {
        "all_buckets": buckets(everything),
        "all_objects": objects(everything),
        "landing_buckets": buckets(LANDING),
        "landing_objects": objects(LANDING),
        "copy_targets": objects((*LANDING, "ecommerce_archive")),
        "artifact_buckets": buckets(("glue_artifacts",)),
        "artifact_objects": objects(("glue_artifacts",)),
        "query_result_buckets": buckets(("shipping_query_results",)),
        "query_result_objects": objects(("shipping_query_results",)),
        "athena_buckets": buckets(("shipping_staging", "shipping_query_results")),
        "athena_objects": objects(("shipping_staging", "shipping_query_results")),
        "topics": list(env.topics.values()),
        "marker_queues": [f"arn:aws:sqs:{r}:{a}:{queue}" for queue in env.queues.values()],
        "glue_jobs": [glue(f"job/{env.glue_name(base)}") for base in sorted(glue_job_bases())],
        "glue_crawlers": [glue(f"crawler/{env.glue_name(base)}") for base in sorted(crawler_bases())],
        "glue_role": [env.glue_role_arn],
        "glue_job_logs": [f"{group}/aws-glue/jobs/output", f"{group}/aws-glue/jobs/error"],
        "workgroup": [f"arn:aws:athena:{r}:{a}:workgroup/primary"],
        "shipping_catalog": [
            glue("catalog"),
            glue(f"database/{shipping}"),
            glue(f"table/{shipping}/transformed_data"),
            glue(f"table/{shipping}/normalized"),
        ],
        "airflow_secrets": [secret[lid] for lid in DEPLOYMENT_ONLY if lid in secret]
        + [f"arn:aws:secretsmanager:{r}:{a}:secret:{prefix}/variables/totesys_tables-{cfn_eval.SECRET_SUFFIX}"],
        "glue_read_buckets": buckets(GLUE_READS),
        "glue_read_objects": objects(GLUE_READS),
        "glue_write_objects": objects(GLUE_WRITES),
        "crawled_buckets": buckets(CRAWLED),
        "crawled_objects": objects(CRAWLED),
        "database_secrets": [secret["WarehouseSecret"], secret["TotesysSecret"], secret["SupplychainSecret"]],
        "warehouse_secret": [secret["WarehouseSecret"]],
        "catalog": [
            glue("catalog"),
            glue(f"database/{etl}"),
            glue(f"database/{shipping}"),
            glue(f"table/{etl}/stg_order_lines"),
            glue(f"table/{shipping}/normalized"),
            glue(f"database/{silver}"),
            glue(f"database/{gold}"),
            glue(f"table/{silver}/fact_shipments"),
            glue(f"table/{gold}/gold_supplier_performance"),
        ],
        "connections": [
            glue("catalog"),
            glue(f"connection/{env.glue_connection('network')}"),
            glue(f"connection/{env.glue_connection('warehouse_jdbc')}"),
        ],
        "jdbc_connection": [glue("catalog"), glue(f"connection/{env.glue_connection('warehouse_jdbc')}")],
        "glue_logs": [
            f"{group}/aws-glue/jobs/output",
            f"{group}/aws-glue/jobs/error",
            f"{group}/aws-glue/jobs/logs-v2",
            f"{group}/aws-glue/crawlers",
        ],
        "eni_create": [
            f"arn:aws:ec2:{r}:{a}:network-interface/eni-0123456789abcdef0",
            f"arn:aws:ec2:{r}:{a}:subnet/{PARAMETERS['GlueSubnetId']}",
            f"arn:aws:ec2:{r}:{a}:security-group/{st.ref('GlueSecurityGroup')}",
        ],
        "enis": [f"arn:aws:ec2:{r}:{a}:network-interface/eni-0123456789abcdef0"],
        "none": ["*"],
    }


def policy(name: str, role: str, policy_name: str) -> list[dict]:
    """The statements of one inline policy of a role, resolved, each with list-valued Action/Resource."""
    (document,) = [p["PolicyDocument"] for p in resources(name)[role]["Properties"]["Policies"]
                   if p["PolicyName"] == policy_name]  # fmt: skip
    statements = []
    for statement in document["Statement"]:
        statement = dict(statement)
        for key in ("Action", "Resource", "NotResource"):
            if key in statement and isinstance(statement[key], str):
                statement[key] = [statement[key]]
        statements.append(statement)
    return statements


def iam_match(pattern: str, value: str, *, case: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def granted(statements: list[dict], action: str) -> list[str]:
    """The resources the Allow statements grant ``action`` on."""
    return [resource for s in statements if s["Effect"] == "Allow"
            and any(iam_match(pattern, action, case=False) for pattern in s["Action"])
            for resource in s.get("Resource", [])]  # fmt: skip


ROLES = {  # table, role, the policy held to it
    "mwaa": (MWAA_CALLS, "MwaaExecutionRole", "etl-pipelines"),
    "glue": (GLUE_CALLS, "GlueJobRole", "etl-glue-jobs"),
}


@pytest.mark.parametrize("name", ("local", *ENVIRONMENTS))
@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_needed_action_is_granted_on_its_resources_only(name, role):
    table, logical_id, policy_name = ROLES[role]
    statements = policy(name, logical_id, policy_name)
    kinds = targets(name)
    for call, needs in table.items():
        for action, kind in needs:
            where = granted(statements, action)
            assert where, f"{role}: {action} (for {call}) is not granted"
            if kind == "none":
                assert action in NO_RESOURCE_LEVEL and where == ["*"], (role, action)
                continue
            assert "*" not in where, f"{role}: {action} is granted on '*'"
            for arn in kinds[kind]:
                assert any(iam_match(pattern, arn) for pattern in where), f"{role}: {action} (for {call}) misses {arn}"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_roles_grant_nothing_beyond_the_table(role):
    table, logical_id, policy_name = ROLES[role]
    needed = {action for needs in table.values() for action, _ in needs}
    for statement in policy("prod", logical_id, policy_name):
        assert statement["Effect"] == "Allow" and "NotResource" not in statement and "NotAction" not in statement
        assert set(statement["Action"]) <= needed, f"{statement.get('Sid')}: {set(statement['Action']) - needed}"
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"] and set(statement["Action"]) <= set(NO_RESOURCE_LEVEL), statement
        assert all("*" not in action for action in statement["Action"]), statement  # no action wildcards


@pytest.mark.parametrize("role", sorted(ROLES))
def test_an_environment_reaches_nothing_of_another(role):
    table, logical_id, policy_name = ROLES[role]
    for name, other in (ENVIRONMENTS, ENVIRONMENTS[::-1]):
        statements, theirs = policy(name, logical_id, policy_name), targets(other)
        for needs in table.values():
            for action, kind in needs:
                if kind not in ENVIRONMENT_OWN:
                    continue
                for arn in theirs[kind]:
                    if arn.endswith(":catalog"):
                        continue  # the account's one Data Catalog: IAM wants it named beside a database
                    assert not any(iam_match(p, arn) for p in granted(statements, action)), (name, action, arn)


def test_the_roles_other_policies():
    role = resources("prod")["MwaaExecutionRole"]["Properties"]
    assert {p["PolicyName"] for p in role["Policies"]} == {"mwaa-environment", "etl-pipelines"}
    assert not role.get("ManagedPolicyArns")
    baseline = policy("prod", "MwaaExecutionRole", "mwaa-environment")
    for effect, actions in MWAA_BASELINE.items():
        assert {a for s in baseline if s["Effect"] == effect for a in s["Action"]} == actions
    source = stack("prod").get_att("MwaaSourceBucket", "Arn")
    for statement in baseline:  # scoped to this environment as far as AWS allows
        for resource in statement.get("Resource", []):
            assert resource == "*" or source in resource or "etl-airflow" in resource or "airflow-celery-" in resource
    assert set(role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]) == {
        "airflow.amazonaws.com", "airflow-env.amazonaws.com"}  # fmt: skip
    glue_role = resources("prod")["GlueJobRole"]["Properties"]
    assert [p["PolicyName"] for p in glue_role["Policies"]] == ["etl-glue-jobs"] and not glue_role.get(
        "ManagedPolicyArns"
    )
    assert glue_role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "glue.amazonaws.com"}
    (pass_role,) = [s for s in policy("prod", "MwaaExecutionRole", "etl-pipelines") if "iam:PassRole" in s["Action"]]
    assert pass_role["Resource"] == [stack("prod").get_att("GlueJobRole", "Arn")]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "glue.amazonaws.com"}}


# The scan: every AWS call in the code must be in the table of the role it runs as.

CLIENT_NAMES = {"client", "s3", "glue", "sts", "secretsmanager", "logs", "athena", "sns_client", "sqs", "sqs_client"}
NOT_AWS_CALLS = {  # methods on clients and hooks that call no AWS API, and why
    "get_conn": "returns the hook's boto3 client",
    "get_async_conn": "returns the hook's aiobotocore client",
    "get_session": "returns the hook's boto3 session",
    "get_credentials": "returns the connection's credentials",
    "client": "builds a client",
    "paginate": "the paginator's API is get_paginator's argument",
    "get_paginator": "recorded as its argument, the paginated API",
}
HOOK_FACTORIES = {"S3Hook", "SnsHook", "SqsHook", "AthenaHook", "s3_hook", "sns_hook", "sqs_hook"}


class AwsCalls(ast.NodeVisitor):
    """Attribute calls on names and expressions that hold a boto3 client or an Amazon provider hook."""

    def __init__(self, tree: ast.Module):
        self.calls: set[str] = set()
        self.imported: set[str] = set()  # modules and classes: never a client
        self.classes: set[str] = set()  # names imported from airflow.providers.amazon or awsglue
        self.bound: set[str] = set()  # names and attributes assigned a client or a hook
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                for alias in node.names:
                    self.imported.add((alias.asname or alias.name).split(".")[0])
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        ("airflow.providers.amazon", "awsglue")
                    ):
                        self.classes.add(alias.asname or alias.name)
        for node in ast.walk(tree):  # bindings first: a use may come before its assignment in the file
            if isinstance(node, ast.Assign) and self._holds_aws(node.value):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.bound.add(target.id)
                    elif isinstance(target, ast.Attribute):
                        self.bound.add(target.attr)
            elif isinstance(node, ast.With | ast.AsyncWith):  # (async) with hook.get_async_conn() as name
                for item in node.items:
                    if isinstance(item.optional_vars, ast.Name) and self._holds_aws(item.context_expr):
                        self.bound.add(item.optional_vars.id)
        self.visit(tree)

    def _holds_aws(self, node: ast.AST) -> bool:
        if isinstance(node, ast.BoolOp):
            return any(self._holds_aws(value) for value in node.values)
        if isinstance(node, ast.Await):
            return self._holds_aws(node.value)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in HOOK_FACTORIES:
                return True
            if name in ("client", "get_conn", "get_async_conn", "get_session") and isinstance(func, ast.Attribute):
                receiver = func.value  # boto3.client(...), or a client or session of an AWS hook
                return (isinstance(receiver, ast.Name) and receiver.id == "boto3") or self._holds_aws(receiver)
            return False
        if isinstance(node, ast.Name):
            return (
                node.id in self.bound
                or "hook" in node.id.lower()
                or (node.id in CLIENT_NAMES and node.id not in self.imported)
            )
        if isinstance(node, ast.Attribute):
            if node.attr == "conn":  # AwsBaseHook.conn: the hook's client
                return self._holds_aws(node.value)
            return node.attr in ("hook", "client", "_client", "glue_client") or node.attr in self.bound
        return False

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and self._holds_aws(func.value):
            if func.attr == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                self.calls.add(node.args[0].value)
            elif func.attr not in NOT_AWS_CALLS:
                self.calls.add(func.attr)
        self.generic_visit(node)


def scan(folder: str) -> tuple[set[str], set[str]]:
    calls, classes = set(), set()
    for path in sorted((REPO / folder).rglob("*.py")):
        found = AwsCalls(ast.parse(path.read_text(), str(path)))
        calls |= found.calls
        classes |= found.classes
    return calls, classes


@pytest.mark.parametrize(
    ("folder", "role", "sure"),
    [
        ("plugins/etl_toolkit", "mwaa", {"get_object", "put_object", "list_objects_v2", "publish", "get_job_run"}),
        ("include/glue_scripts", "glue", {"get_object", "put_object", "list_objects_v2", "get_secret_value"}),
    ],
)
def test_every_aws_call_in_the_code_is_in_the_table(folder, role, sure):
    table = ROLES[role][0]
    calls, classes = scan(folder)
    assert sure <= calls, f"the scan of {folder} lost calls it must see: {sure - calls}"
    assert not calls - set(table), f"{folder} calls AWS APIs missing from the {role} table: {calls - set(table)}"
    assert not classes - set(table), f"{folder} uses classes missing from the {role} table: {classes - set(table)}"


def test_the_scan_sees_the_calls_of_an_async_client_and_a_kept_one():
    """The shapes the marker queue reader uses: an aiobotocore client bound by ``async with``, and
    kept on the instance for later calls."""
    code = """
from airflow.providers.amazon.aws.hooks.sqs import SqsHook

class Reader:
    async def read(self):
        hook = SqsHook(aws_conn_id=None)
        async with await hook.get_async_conn() as reader:
            self._reader = reader
            url = (await reader.get_queue_url(QueueName="q"))["QueueUrl"]
            await reader.receive_message(QueueUrl=url)

    async def ack(self):
        await self._reader.delete_message_batch(QueueUrl="u", Entries=[])
"""
    found = AwsCalls(ast.parse(code))
    assert found.calls == {"get_queue_url", "receive_message", "delete_message_batch"}
    assert found.classes == {"SqsHook"}


# -- e. security basics ---------------------------------------------------------------------------------------


def dag_buckets(argument: str) -> set[str]:
    """Environment bucket keys the DAGs pass as ``argument`` (landing_bucket, archive_bucket)."""
    keys = set()
    for path in sorted((REPO / "dags").glob("*.py")):
        text = path.read_text()
        assigned = dict(re.findall(r"^(\w+) = environment\.bucket\(\"(\w+)\"\)", text, re.MULTILINE))
        keys |= {assigned[name] for name in re.findall(rf"\b{argument}=(\w+)", text) if name in assigned}
    return keys


@pytest.mark.parametrize("name", ("local", "prod"))
def test_buckets_are_encrypted_private_and_tls_only(name):
    buckets = of_type(name, "AWS::S3::Bucket")
    policies = {r["Properties"]["Bucket"]: r["Properties"]["PolicyDocument"]
                for r in of_type(name, "AWS::S3::BucketPolicy").values()}  # fmt: skip
    assert len(buckets) == len(environment.LOCAL["buckets"]) + 1
    for lid, bucket in buckets.items():
        props = bucket["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), lid
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
        ), lid
        arn = f"arn:aws:s3:::{props['BucketName']}"
        (deny,) = [s for s in policies[props["BucketName"]]["Statement"] if s["Effect"] == "Deny"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and deny["Principal"] == "*"
        assert set(deny["Resource"]) == {arn, f"{arn}/*"} and deny["Action"] == "s3:*"


def test_marker_and_archive_buckets_are_versioned_and_landing_sends_events():
    landing, archive = dag_buckets("landing_bucket"), dag_buckets("archive_bucket")
    assert len(landing) >= 4 and archive, (landing, archive)
    env = environment.validate(variable("prod"))
    by_name = {r["Properties"]["BucketName"]: r["Properties"] for r in of_type("prod", "AWS::S3::Bucket").values()}
    for key in landing | archive:
        assert by_name[env.bucket(key)].get("VersioningConfiguration") == {"Status": "Enabled"}, key
    for key in landing:
        assert by_name[env.bucket(key)]["NotificationConfiguration"] == {
            "EventBridgeConfiguration": {"EventBridgeEnabled": True}}, key  # fmt: skip
    source = resources("prod")["MwaaSourceBucket"]["Properties"]
    assert source["VersioningConfiguration"] == {"Status": "Enabled"}  # MWAA requires it


@pytest.mark.parametrize("name", ("local", "prod"))
def test_each_landing_bucket_sends_its_markers_to_its_queue_as_devstack_does(name):
    """One queue, dead-letter queue, rule and queue policy per marker-driven pipeline, each as
    devstack.resources provisions it: the same pattern (marker_rule_pattern), timeout and redrive."""
    env = environment.validate(variable(name))
    st, by_type = stack(name), {}
    for lid, resource in resources(name).items():
        by_type.setdefault(resource["Type"], {})[lid] = resource["Properties"]
    queues = {p["QueueName"]: (lid, p) for lid, p in by_type["AWS::SQS::Queue"].items()}
    rules = {p["Name"]: p for p in by_type["AWS::Events::Rule"].values()}
    assert len(rules) == len(environment.MARKER_QUEUES) and len(queues) == 2 * len(environment.MARKER_QUEUES)
    # every landing bucket the DAGs wait on has its queue
    assert set(environment.MARKER_QUEUES.values()) == dag_buckets("landing_bucket")
    for key, bucket_key in environment.MARKER_QUEUES.items():
        queue_name = env.queue(key)
        queue_id, queue = queues[queue_name]
        dead_letter_id, dead_letter = queues[devstack_resources.dead_letter_queue(queue_name)]
        queue_arn, dead_letter_arn = st.get_att(queue_id, "Arn"), st.get_att(dead_letter_id, "Arn")

        assert queue["VisibilityTimeout"] == devstack_resources.MARKER_QUEUE_VISIBILITY_TIMEOUT
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": dead_letter_arn,
            "maxReceiveCount": devstack_resources.MARKER_QUEUE_MAX_RECEIVE_COUNT,
        }
        assert dead_letter["MessageRetentionPeriod"] == devstack_resources.DEAD_LETTER_RETENTION_SECONDS
        assert queue["SqsManagedSseEnabled"] is True and dead_letter["SqsManagedSseEnabled"] is True
        assert "RedrivePolicy" not in dead_letter

        rule = rules[queue_name]  # named as its queue
        assert rule["EventPattern"] == devstack_resources.marker_rule_pattern(env.bucket(bucket_key))
        assert rule["State"] == "ENABLED" and rule.get("EventBusName", "default") == "default"
        assert rule["Targets"] == [{"Id": "marker-queue", "Arn": queue_arn}]
        rule_id = next(lid for lid, p in by_type["AWS::Events::Rule"].items() if p is rule)

        (policy,) = [p for p in by_type["AWS::SQS::QueuePolicy"].values() if st.ref(queue_id) in p["Queues"]]
        assert policy["Queues"] == [st.ref(queue_id), st.ref(dead_letter_id)]
        allow, deny = policy["PolicyDocument"]["Statement"]
        assert allow == {
            "Sid": "MarkerEventsFromTheRule",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": st.get_att(rule_id, "Arn")}},
        }
        # the devstack policy's statement, for the same queue and rule
        local_allow = devstack_resources.marker_queue_policy(queue_arn, st.get_att(rule_id, "Arn"))["Statement"]
        assert [allow] == local_allow
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "sqs:*"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert set(deny["Resource"]) == {queue_arn, dead_letter_arn}


def test_the_mwaa_role_reads_the_marker_queues_and_nothing_else_of_sqs():
    env = environment.validate(variable("prod"))
    statements = policy("prod", "MwaaExecutionRole", "etl-pipelines")
    marker_queues = {f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}" for queue in env.queues.values()}
    reads = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl",
             "sqs:GetQueueAttributes")  # fmt: skip
    for action in reads:
        assert set(granted(statements, action)) == marker_queues, action
    sqs_actions = {a for s in statements for a in s["Action"] if a.startswith("sqs:")}
    assert sqs_actions == set(reads)  # no SendMessage, no queue administration, no dead-letter queue


def test_secrets_are_generated_and_no_password_is_written():
    env = environment.validate(variable("prod"))
    secret_resources = of_type("prod", "AWS::SecretsManager::Secret").values()
    secrets = {r["Properties"]["Name"]: r["Properties"] for r in secret_resources}
    for name in env.secrets.values():
        generated = secrets[name]["GenerateSecretString"]
        assert "SecretString" not in secrets[name] and generated["GenerateStringKey"] == "password"
        template_keys = json.loads(generated["SecretStringTemplate"])
        assert {"engine", "host", "port", "dbname", "username"} <= set(template_keys)
        assert "password" not in template_keys
    dynamic = re.compile(r"\{\{resolve:secretsmanager:arn:aws:secretsmanager:[^:]+:\d{12}:secret:[\w/+=.@-]+"
                         r":SecretString:password\}\}")  # fmt: skip
    for name in ("warehouse_db", "totesys_db", "supplychain_db"):
        (connection,) = [p for n, p in secrets.items() if n.endswith(f"/connections/{name}")]
        assert dynamic.fullmatch(json.loads(connection["SecretString"])["password"]), name

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if re.fullmatch("passw(or)?d", str(key), re.IGNORECASE):
                    assert isinstance(value, str) and dynamic.fullmatch(value), path + [key]
                walk(value, [*path, key])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, [*path, index])
        elif isinstance(node, str) and re.search("passw", node, re.IGNORECASE):
            for match in re.finditer(r"\"password\"\s*:\s*\"([^\"]*)\"", node):
                assert dynamic.fullmatch(match.group(1)), path
            assert node == "password" or '"password"' in node or ":SecretString:password}}" in node, path

    walk(resources("prod"), [])
    assert not [p for p in template()["Parameters"] if "passw" in p.lower()]


def test_an_empty_parameter_is_refused():
    declared = template()["Parameters"]
    checked = 0
    for name, spec in declared.items():
        if spec["Type"].startswith(("AWS::", "List<AWS::")):
            continue  # CloudFormation looks these up in the account: an empty one does not exist
        if name in MAY_BE_EMPTY:
            cfn_eval.Stack(template(), {**PARAMETERS, "EnvironmentName": "prod", name: ""})
            continue
        with pytest.raises(cfn_eval.ParameterError):
            cfn_eval.Stack(template(), {**PARAMETERS, "EnvironmentName": "prod", name: ""})
        checked += 1
    assert checked >= 15
    for bad in ("Prod", "1prod", "prod_1", "a" * 21):
        with pytest.raises(cfn_eval.ParameterError):
            stack(bad)
    with pytest.raises(cfn_eval.ParameterError):
        stack("prod", NotificationEmail="not-an-address")
    rules = template()["Rules"]
    assert {"SubnetsInVpc", "GlueSubnetIsOneOfSubnetIds"} <= set(rules)


def test_mwaa_environment():
    assert "MwaaEnvironment" not in resources("prod")  # the first deploy: no environment before the bundle
    mwaa = stack("prod", CreateMwaaEnvironment="true").resources()["MwaaEnvironment"]["Properties"]
    assert mwaa["AirflowVersion"] == "3.3.1"
    assert (mwaa["DagS3Path"], mwaa["PluginsS3Path"], mwaa["RequirementsS3Path"]) == (
        "dags", "plugins.zip", "requirements.txt")  # fmt: skip
    assert "PluginsS3ObjectVersion" not in mwaa and "RequirementsS3ObjectVersion" not in mwaa
    assert mwaa["SourceBucketArn"] == stack("prod").get_att("MwaaSourceBucket", "Arn")
    assert mwaa["ExecutionRoleArn"] == stack("prod").get_att("MwaaExecutionRole", "Arn")
    options = mwaa["AirflowConfigurationOptions"]
    assert options["secrets.backend"] == "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    prefixes = json.loads(options["secrets.backend_kwargs"])
    assert prefixes == {"connections_prefix": "prod/airflow/connections", "variables_prefix": "prod/airflow/variables"}
    variable_secret = resources("prod")["EtlEnvironmentVariableSecret"]["Properties"]["Name"]
    assert variable_secret == f"{prefixes['variables_prefix']}/{environment.VARIABLE}"
    assert {"etl.glue_poll_seconds", "etl.marker_poke_seconds", "etl.retry_delay_seconds",
            "etl.totesys_ingest_schedule"} <= set(options)  # fmt: skip
    assert options["aws.session_factory"] == AWS_SESSION_FACTORY  # as every local Airflow
    versioned = stack("prod", CreateMwaaEnvironment="true", PluginsS3ObjectVersion="v1.a",
                      RequirementsS3ObjectVersion="v2.b").resources()["MwaaEnvironment"]["Properties"]  # fmt: skip
    assert (versioned["PluginsS3ObjectVersion"], versioned["RequirementsS3ObjectVersion"]) == ("v1.a", "v2.b")


def test_outputs_name_everything():
    outputs = stack("prod", CreateMwaaEnvironment="true").outputs()
    env = environment.validate(variable("prod"))
    values = set(map(str, outputs.values()))
    for section, names in env.names().items():
        assert set(names.values()) - values == set() or section == "secrets", section
    assert {stack("prod").ref(lid) for lid in ("WarehouseSecret", "TotesysSecret", "SupplychainSecret")} <= values
    assert env.glue_role_arn in values
    assert outputs["MwaaWebserverUrl"].startswith("https://") and outputs["MwaaEnvironmentName"] == "prod-etl-airflow"
    assert stack("prod").ref("EtlEnvironmentVariableSecret") in values


@pytest.mark.parametrize("ports", [{}, {"SourcePort": "5433"}, {"SourcePort": "5433", "SupplychainSourcePort": "5434"}])
def test_no_security_group_holds_a_rule_twice(ports):
    """EC2 refuses a duplicate rule: databases sharing a port share the one egress rule."""
    for logical_id, group in stack("prod", **ports).resources().items():
        if group["Type"] != "AWS::EC2::SecurityGroup":
            continue
        rules = [(r["IpProtocol"], str(r["FromPort"]), str(r["ToPort"]), r["CidrIp"])
                 for r in group["Properties"]["SecurityGroupEgress"]]  # fmt: skip
        assert len(rules) == len(set(rules)), (logical_id, rules)
        wanted = {"5432", *ports.values()}
        assert {rule[1] for rule in rules} == {"443", *wanted}, logical_id
